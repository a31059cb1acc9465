module github.com/tlwebhook/tlwebhook/examples/frameworks

go 1.26.0

require github.com/tlwebhook/tlwebhook v0.0.0-20261201211139-a468f3c396dd
