package seccomprules

import mobyseccomp "github.com/moby/profiles/seccomp"

// dockerDefault is Docker's default profile, from moby's Go source (the
// one the engine embeds); a fresh value on every call.
func dockerDefault() (*mobyseccomp.Seccomp, error) {
	return mobyseccomp.DefaultProfile(), nil
}
