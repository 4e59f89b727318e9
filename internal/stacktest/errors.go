package stacktest

import "errors"

// ErrNoModule is returned by ModuleRoot when the go command does not run
// inside a module, so there is no source tree to build from.
var ErrNoModule = errors.New("stacktest: not inside a Go module")
