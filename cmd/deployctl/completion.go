package main

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deployctl/deployctl/internal/wire"
)

// completionTimeout bounds the cluster lookup of one completion: a shell
// waits for it at every TAB.
const completionTimeout = 2 * time.Second

// addCompletions gives every command that takes a service name or a
// revision number its shell completion (cobra's `completion` command
// writes the scripts): service names and revisions come from the cluster
// at --addr, within completionTimeout. A lookup that fails completes
// nothing and prints nothing: a shell must not show an error at TAB.
func addCompletions(root *cobra.Command, g *globals) {
	// Commands whose first argument is a service name, and the flags that
	// name a service or a revision. Commands missing from a build are
	// skipped, so the lists may name those other work adds.
	serviceArgCommands := []string{"status", "history", "rollback", "scale", "promote", "rm", "ps", "logs"}
	serviceFlags := map[string]string{"events": "service"}
	revisionFlags := map[string]string{"rollback": "to"}
	for _, c := range root.Commands() {
		name := c.Name()
		if slices.Contains(serviceArgCommands, name) && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return completeServices(cmd, g, toComplete)
			}
		}
		if flag, ok := serviceFlags[name]; ok && c.Flags().Lookup(flag) != nil {
			_ = c.RegisterFlagCompletionFunc(flag, func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				return completeServices(cmd, g, toComplete)
			})
		}
		if flag, ok := revisionFlags[name]; ok && c.Flags().Lookup(flag) != nil {
			_ = c.RegisterFlagCompletionFunc(flag, func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) == 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return completeRevisions(cmd, g, args[0], toComplete)
			})
		}
		if name == "apply" && c.ValidArgsFunction == nil {
			// apply FILE completes files; apply --refresh SERVICE services.
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if refresh, _ := cmd.Flags().GetBool("refresh"); refresh && len(args) == 0 {
					return completeServices(cmd, g, toComplete)
				}
				return nil, cobra.ShellCompDirectiveDefault
			}
			// --if-revision: the current revision of FILE's service.
			_ = c.RegisterFlagCompletionFunc("if-revision", func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) == 0 || args[0] == "-" {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				spec, _, err := readApplyBody(args[0], nil, "")
				if err != nil {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return completeCurrentRevision(cmd, g, spec.Service)
			})
		}
	}
}

// completeServices lists the cluster's services starting with prefix.
func completeServices(cmd *cobra.Command, g *globals, prefix string) ([]string, cobra.ShellCompDirective) {
	if g.buildClient() != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	list, err := g.client().Services(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, s := range list {
		if strings.HasPrefix(s.Service, prefix) {
			out = append(out, s.Service+"\t"+s.State+", revision "+strconv.Itoa(s.Revision))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeRevisions lists a service's revisions starting with prefix,
// newest first, each with its state and cause.
func completeRevisions(cmd *cobra.Command, g *globals, service, prefix string) ([]string, cobra.ShellCompDirective) {
	if g.buildClient() != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	list, err := g.client().History(ctx, service)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for i := len(list) - 1; i >= 0; i-- {
		h := list[i]
		if n := strconv.Itoa(h.Revision); strings.HasPrefix(n, prefix) {
			out = append(out, n+"\t"+h.State+": "+h.Cause)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// completeCurrentRevision offers the service's current revision (0 when it
// does not exist), what apply --if-revision expects.
func completeCurrentRevision(cmd *cobra.Command, g *globals, service string) ([]string, cobra.ShellCompDirective) {
	if g.buildClient() != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	st, err := g.client().Status(ctx, service, 0, 0)
	switch {
	case errors.Is(err, wire.ErrNotFound):
		return []string{"0\t" + service + " does not exist yet"}, cobra.ShellCompDirectiveNoFileComp
	case err != nil:
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []string{strconv.Itoa(st.Revision) + "\t" + service + ": current revision, " + st.RevisionState}, cobra.ShellCompDirectiveNoFileComp
}
