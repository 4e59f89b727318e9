package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// needsInit reports whether cmd works only in a data directory made by
// `stack init`. Every command does, except those that make it, those that
// read nothing in it, and reads of files named on the command line.
func needsInit(cmd *cobra.Command) bool {
	if !cmd.Runnable() || cmd.Name() == "help" || strings.HasPrefix(cmd.Name(), "__") {
		return false
	}
	switch cmd.CommandPath() {
	case "stack init", "stack config check", "stack config show", "stack demo", "stack detect scan":
		return false
	case "stack agent register", "stack agent list", "stack agent show", "stack agent disable", "stack agent enable",
		"stack control join-token", "stack control status", "stack audit prove", "stack control fleet-key",
		"stack handoff schema put", "stack handoff schema list", "stack handoff list", "stack mcp":
		// They only talk to a control plane: an operator's machine needs
		// control.url, the operator token and the control CA, no keys.
		return false
	case "stack passport verify":
		return !cmd.Flags().Changed("jwks")
	case "stack audit tail", "stack audit export", "stack audit timeline":
		// The local log at --db, or the control plane's fleet log.
		return !cmd.Flags().Changed("db") && !cmd.Flags().Changed("fleet")
	case "stack audit verify":
		return !cmd.Flags().Changed("fleet")
	}
	return true
}

// requireInit fails, with the hint to run `stack init`, when the data
// directory or its issuer keys (which init always makes, whatever the KMS)
// are missing.
func (a *app) requireInit() error {
	home := a.home()
	fi, err := os.Stat(home)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no data directory at %s: run `stack init` first, or point --home or STACK_HOME at one", home)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("data directory %s is not a directory: point --home or STACK_HOME at one made by `stack init`", home)
	}
	keys := a.cfg.Passport.KeysPath
	if _, err := os.Stat(keys); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data directory %s is not initialised (no %s): run `stack init` first, or point --home or STACK_HOME at an initialised one", home, keys)
	} else if err != nil {
		return err
	}
	return nil
}
