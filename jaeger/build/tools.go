//go:build tools

// Package tools pins the Jaeger v2 binary (cmd/jaeger) as a dependency of this build module.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
