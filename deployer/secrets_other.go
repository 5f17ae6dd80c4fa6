//go:build !linux

package deployer

import "errors"

var errNoTmpfs = errors.New("secrets need a Linux host (tmpfs)")

func mountTmpfs(string, int) error { return errNoTmpfs }

func unmountTmpfs(string) error { return nil }
