module github.com/copse-rs/copse/bindings/go

go 1.19
