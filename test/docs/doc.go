// Package docs checks that the documentation says what the binaries do:
// the flag tables in docs/operations.md are generated from each binary's
// -help, and a test fails when they drift (go test ./test/docs -update
// writes them anew).
package docs
