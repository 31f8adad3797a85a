module github.com/gochat-im/gochat/bench

go 1.26
