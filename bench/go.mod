module github.com/gochat-im/gochat/bench

go 1.26.0

replace github.com/gochat-im/gochat/idl => ../idl

replace github.com/gochat-im/gochat/pkg => ../pkg
