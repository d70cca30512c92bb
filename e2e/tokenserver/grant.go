package tokenserver

import (
	"slices"
	"strings"
)

// Grant decides which actions an authenticated user gets on a repository,
// given the actions asked for; nil or empty means none. It must be safe for
// concurrent use.
type Grant func(user, repository string, asked []string) []string

// grantAsked is the default Grant: everything asked for.
func grantAsked(_, _ string, asked []string) []string { return asked }

// PullOnlyUnder returns a Grant that gives only "pull" (when asked) on
// prefix and the repositories below it, and every action asked for
// elsewhere: a pull-only token scope, as a read-only robot account or
// project role gives.
func PullOnlyUnder(prefix string) Grant {
	prefix = strings.TrimSuffix(prefix, "/")
	return func(_, repository string, asked []string) []string {
		if repository != prefix && !strings.HasPrefix(repository, prefix+"/") {
			return asked
		}
		if slices.Contains(asked, "pull") {
			return []string{"pull"}
		}
		return nil
	}
}
