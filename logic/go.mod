module github.com/gochat-im/gochat/logic

go 1.26
