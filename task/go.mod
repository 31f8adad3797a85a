module github.com/gochat-im/gochat/task

go 1.26
