package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/controller"
	"github.com/deployctl/deployctl/internal/secretbox"
	"github.com/deployctl/deployctl/internal/wire"
)

// The key-encryption key's commands: `secret key generate`, `secret
// rotate-key`, `cluster unlock` (docs/secrets.md, "The key").

// newSecretKeyCmd is `deployctl secret key generate --out FILE`.
func newSecretKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "The key-encryption key of secrets"}
	var out string
	gen := &cobra.Command{
		Use:   "generate --out FILE",
		Short: "Write a new key-encryption key to FILE (mode 0600; never over an existing file)",
		Long: `generate writes a new random 256-bit key-encryption key to FILE, readable by
its owner only, and prints its id. It is made on the operator's machine: the
first key of a cluster of --autolock servers (give it to each with
'deployctl cluster unlock --key-file FILE'), or the new key of a rotation
('deployctl secret rotate-key --new-key-file FILE'). Keep FILE offline (a
password manager, a vault): whoever holds it and a server's data directory
reads every secret.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return exitWith(ExitUsage, errors.New("--out FILE is required: where to write the new key"))
			}
			key, err := secretbox.CreateKeyFile(out, rand.Reader)
			if errors.Is(err, os.ErrExist) {
				return exitWith(ExitUsage, fmt.Errorf("--out %s exists; a key file is never overwritten: choose another path", out))
			}
			if err != nil {
				return exitWith(ExitError, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key-encryption key %s written to %s (mode 0600); keep it offline\n", key.ID(), out)
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "", "file to write the key to (must not exist)")
	cmd.AddCommand(gen)
	return cmd
}

// readKeyFile reads a key file's content from path, or stdin for "" or
// "-": a key is never a flag's value (it would be in the shell's history
// and ps). It is checked here so a typo fails before any request.
func readKeyFile(flag, path string, stdin io.Reader) ([]byte, error) {
	var raw []byte
	var err error
	if path == "" || path == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, 4096))
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if _, err := secretbox.ParseKey(raw); err != nil {
		clear(raw)
		return nil, fmt.Errorf("%s: %w (make one with `deployctl secret key generate --out FILE`)", flag, err)
	}
	return raw, nil
}

// newRotateKeyCmd is `deployctl secret rotate-key --new-key-file FILE`.
func newRotateKeyCmd(g *globals) *cobra.Command {
	var file string
	var leaderOnly bool
	cmd := &cobra.Command{
		Use:   "rotate-key --new-key-file FILE",
		Short: "Re-wrap every secret's data key under a new key-encryption key, then give it to every server",
		Long: `rotate-key sends the new key (made with 'deployctl secret key generate') to
the leader, which unwraps every stored data key with the current key and
wraps it with the new one in one raft write; values are not re-encrypted
and keep being delivered. From then on the old key opens nothing the
cluster stores or writes, and no value sealed with it is accepted.

Then the new key is given to every other server (as 'cluster unlock' does):
a server that keeps its key in a file (--secrets-key-file) writes it there;
an --autolock server holds it in memory. A server that cannot be reached
keeps the old key and says so (its log, 'cluster status', 503 secrets_key
if it leads) until you run 'deployctl cluster unlock --server ADDR
--key-file FILE' for it. Keep FILE until every server has it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return exitWith(ExitUsage, errors.New("--new-key-file FILE is required (make it with `deployctl secret key generate --out FILE`); a key is never a flag's value"))
			}
			raw, err := readKeyFile("--new-key-file", file, cmd.InOrStdin())
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			defer clear(raw)
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			res, err := g.client().RotateSecretsKey(ctx, raw)
			if err != nil {
				return clientErr(err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "rotated: %d secret versions wrapped with key %s (was %s) by %s\n", res.Versions, res.NewKeyID, res.OldKeyID, res.Leader)
			if leaderOnly {
				return nil
			}
			failed := installKey(ctx, g, raw, res.Leader, w)
			if failed > 0 {
				return exitWith(ExitError, fmt.Errorf("%d servers still hold the old key: give them %s with `deployctl cluster unlock --server ADDR --key-file %s`", failed, file, file))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "new-key-file", "", "the new key (a file from `secret key generate`, or - for stdin)")
	cmd.Flags().BoolVar(&leaderOnly, "leader-only", false, "do not give the new key to the other servers (do it with `cluster unlock` for each)")
	return cmd
}

// installKey gives the cluster's new key to every server but the leader
// (which has it) and returns how many could not take it.
func installKey(ctx context.Context, g *globals, raw []byte, leader string, w io.Writer) int {
	st, err := g.client().Cluster(ctx)
	if err != nil {
		fmt.Fprintf(w, "cannot list the servers (%v): give each the new key with `deployctl cluster unlock --server ADDR --key-file FILE`\n", err)
		return 1
	}
	nodes := st.Nodes
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	failed := 0
	for _, n := range nodes {
		if n.ID == leader {
			continue
		}
		if n.APIAddr == "" {
			fmt.Fprintf(w, "%s: no API address registered; give it the key with `deployctl cluster unlock`\n", n.ID)
			failed++
			continue
		}
		out, err := unlockOne(ctx, g, n.APIAddr, raw)
		if err != nil {
			fmt.Fprintf(w, "%s (%s): still holds the old key: %v\n", n.ID, n.APIAddr, err)
			failed++
			continue
		}
		fmt.Fprintf(w, "%s: %s\n", n.ID, describeUnlock(out))
	}
	return failed
}

func unlockOne(ctx context.Context, g *globals, addr string, raw []byte) (wire.UnlockResult, error) {
	c, err := g.clientFor([]string{addr})
	if err != nil {
		return wire.UnlockResult{}, err
	}
	return c.Unlock(ctx, raw)
}

func describeUnlock(out wire.UnlockResult) string {
	switch {
	case out.Already:
		return "already holds key " + out.KeyID
	case out.KeyFile != "":
		return fmt.Sprintf("key %s written to %s", out.KeyID, out.KeyFile)
	}
	return fmt.Sprintf("unsealed with key %s (in memory only)", out.KeyID)
}

// newUnlockCmd is `deployctl cluster unlock [--server ADDR] [--key-file FILE]`.
func newUnlockCmd(g *globals) *cobra.Command {
	var server, file string
	cmd := &cobra.Command{
		Use:   "unlock [--server ADDR] [--key-file FILE]",
		Short: "Give one server the key-encryption key (an --autolock server after a start, or any server after a rotation)",
		Long: `unlock sends the key-encryption key (read from --key-file, or stdin; never a
flag's value) to one server over the cluster's mutual TLS, as the operator.
The server checks it against the key the cluster's secrets are wrapped with
(or, before any secret exists, the key the other servers hold) and refuses
another (403 wrong_key; it stays as it was). An --autolock server keeps it in
memory only and serves secrets from then on; a server that keeps its key in
a file (after a rotation) writes it there. --server defaults to the first
--addr; the request is answered by that server, never forwarded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			addr := server
			if addr == "" {
				addrs := splitList([]string{g.addr})
				if len(addrs) == 0 {
					return exitWith(ExitUsage, errors.New("--server ADDR: which server to unlock"))
				}
				addr = addrs[0]
			}
			raw, err := readKeyFile("--key-file", file, cmd.InOrStdin())
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			defer clear(raw)
			ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
			defer cancel()
			out, err := unlockOne(ctx, g, addr, raw)
			if err != nil {
				return clientErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", out.Node, describeUnlock(out))
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "API address of the server to unlock (default: the first --addr)")
	cmd.Flags().StringVar(&file, "key-file", "", "the key file (default, or -: stdin)")
	return cmd
}

// loadServerKey is the server's key-encryption key at start: none with
// --autolock (sealed until `cluster unlock`), else the key file (made at
// the first start). It returns the file a rotated key is written to.
func loadServerKey(cfg serverConfig, log hclog.Logger) (*secretbox.Key, string, error) {
	if !cfg.Autolock {
		path := cfg.SecretsKeyFile
		if path == "" {
			path = filepath.Join(cfg.DataDir, "secrets.key")
		}
		key, err := loadSecretsKey(path, log)
		return key, path, err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "secrets.key")); err == nil {
		log.Warn("--autolock, but a key file is on this server's disk: with it, the disk opens every secret; remove it once the operator holds a copy",
			"file", filepath.Join(cfg.DataDir, "secrets.key"))
	}
	log.Warn("sealed (--autolock): this server serves no secret until the operator gives it the key: deployctl cluster unlock --server " + cfg.HTTPAdvertise + " --key-file FILE")
	return nil, "", nil
}

// registerKeyChanges registers this server again whenever its key changes
// (unlocked, rotated, replaced), so cluster status and the leader's
// same-key check see its new key id. Each change is retried until it is
// registered or ctx ends.
func registerKeyChanges(ctx context.Context, ctrl *controller.Controller, joinReq func() wire.JoinRequest, own *wire.Client, log hclog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ctrl.SecretsKeyChanged():
		}
		req := joinReq()
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := own.Join(cctx, req)
			cancel()
			if err == nil {
				log.Info("registered the new key-encryption key id", "key_id", req.SecretsKeyID)
				break
			}
			log.Debug("registering the new key id", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
