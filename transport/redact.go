package transport

import (
	"regexp"
	"strings"
)

// redacted replaces every removed secret.
const redacted = "REDACTED"

// safeQueryKey reports whether a query parameter of a registry request
// carries no secret and helps when reading a log: blob digests, mount
// sources, paging and token scopes. Every other value (upload `_state`
// tokens, presigned `X-Amz-Signature`, `sig`, `token`, ...) is redacted.
func safeQueryKey(key string) bool {
	switch strings.ToLower(key) {
	case "digest", "mount", "from", "n", "last", "service", "scope", "format":
		return true
	}
	return false
}

// The patterns are compiled once and only read afterwards.
var (
	// headerRE matches a credential-bearing header and its value up to the
	// end of the line or a closing quote.
	headerRE = regexp.MustCompile(`(?i)\b(proxy-authorization|authorization|set-cookie|cookie|x-registry-auth|apikey)(\s*[:=]\s*\[?)[^\r\n"\]]*`)
	// bearerRE matches a bearer token (RFC 6750 token68).
	bearerRE = regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)`)
	// userinfoRE matches the user[:password]@ part of a URL.
	userinfoRE = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s"'<>@]+@`)
	// queryRE matches one query parameter, of an absolute or relative URL.
	queryRE = regexp.MustCompile(`([?&])([^=&?#\s"'<>]+)=([^&#\s"'<>]*)`)
	// jsonSecretRE matches a secret-looking JSON string field.
	jsonSecretRE = regexp.MustCompile(`(?i)"(token|access_token|refresh_token|identitytoken|registrytoken|password|secret|auth)"(\s*:\s*)"[^"]*"`)
)

// Redact removes secrets from s so that it can be printed: the userinfo of
// URLs, query values of URLs except a few harmless registry parameters
// (upload state tokens and presigned links are removed), bearer tokens,
// the values of Authorization, Proxy-Authorization, Cookie and Set-Cookie
// headers, and token or password fields of JSON bodies. It is meant for
// error messages and log lines; it errs on the side of removing too much.
func Redact(s string) string {
	if s == "" {
		return s
	}
	s = headerRE.ReplaceAllString(s, "${1}${2}"+redacted)
	s = redactBearer(s)
	s = userinfoRE.ReplaceAllString(s, "${1}")
	s = queryRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := queryRE.FindStringSubmatch(m)
		if safeQueryKey(sub[2]) || sub[3] == "" {
			return m
		}
		// Punctuation that ends a URL quoted in prose ("...?x=y: EOF")
		// stays.
		value := sub[3]
		trimmed := strings.TrimRight(value, ":,.;)")
		return sub[1] + sub[2] + "=" + redacted + value[len(trimmed):]
	})
	s = jsonSecretRE.ReplaceAllString(s, `"${1}"${2}"`+redacted+`"`)
	return s
}

// redactBearer replaces bearer tokens, leaving alone the auth-params of a
// `WWW-Authenticate: Bearer realm="...",service="..."` challenge.
func redactBearer(s string) string {
	locs := bearerRE.FindAllStringSubmatchIndex(s, -1)
	if locs == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, loc := range locs {
		tokStart, tokEnd := loc[2], loc[3]
		if tokEnd < len(s) && s[tokEnd] == '"' {
			continue // `realm="...`: a challenge parameter, not a token
		}
		if s[tokStart:tokEnd] == redacted {
			continue
		}
		b.WriteString(s[last:tokStart])
		b.WriteString(redacted)
		last = tokEnd
	}
	b.WriteString(s[last:])
	return b.String()
}
