//go:build !crashpoint

package crashpoint

// Hit does nothing: this binary was built without -tags crashpoint.
func Hit(string) {}
