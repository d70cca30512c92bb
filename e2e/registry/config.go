package registry

import (
	"fmt"

	"github.com/distribution/distribution/v3/configuration"
	// The YAML library distribution's configuration package is written
	// for (its MarshalYAML methods), already in the module graph through
	// it; now a direct requirement.
	"go.yaml.in/yaml/v2"
)

// TokenAuth enables distribution's Bearer token auth (the "token" auth
// scheme): clients get a JWT from Realm and the registry checks its
// signature, issuer, audience, lifetime and granted actions.
type TokenAuth struct {
	// Realm is the URL of the token endpoint the registry's 401
	// challenges send clients to.
	Realm string
	// Service names the registry: the challenge's service parameter and
	// the audience a token must carry.
	Service string
	// Issuer is the issuer (iss) a token must carry.
	Issuer string
	// RootCertBundle is a PEM file of the certificates trusted to sign
	// tokens (a token carries its certificate in its x5c header).
	RootCertBundle string
}

// config builds the distribution configuration for one start: one builder
// for both kinds, since distribution 2.8 reads the same format (it ignores
// keys it does not know).
func (r *Registry) config() *configuration.Configuration {
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": r.RootDir},
			"delete":     configuration.Parameters{"enabled": true},
			"maintenance": configuration.Parameters{
				// The purger runs in a goroutine that sleeps up to an hour
				// and would outlive a stopped App; tests never need it.
				"uploadpurging": map[any]any{"enabled": false},
				"readonly":      map[any]any{"enabled": r.opts.ReadOnly},
			},
		},
	}
	cfg.HTTP.Addr = r.Addr
	cfg.HTTP.Secret = r.secret
	cfg.HTTP.RelativeURLs = r.opts.RelativeURLs
	cfg.Log.AccessLog.Disabled = true
	switch {
	case r.htpasswd != "":
		realm := r.opts.Realm
		if realm == "" {
			realm = DefaultRealm
		}
		cfg.Auth = configuration.Auth{
			"htpasswd": configuration.Parameters{"realm": realm, "path": r.htpasswd},
		}
	case r.opts.Token != nil:
		t := r.opts.Token
		cfg.Auth = configuration.Auth{
			"token": configuration.Parameters{
				"realm":          t.Realm,
				"service":        t.Service,
				"issuer":         t.Issuer,
				"rootcertbundle": t.RootCertBundle,
			},
		}
	}
	if r.opts.Kind == V28 {
		// The child process serves HTTP itself, so TLS, draining and log
		// level are its own settings (in-process, this package's server
		// does TLS and draining, and logrus is set directly).
		if r.opts.TLS {
			cfg.HTTP.TLS.Certificate = r.tlsCertFile
			cfg.HTTP.TLS.Key = r.tlsKeyFile
			// HTTP/1.1 only, like the in-process server; an HTTP/2
			// server also waits a second after its GOAWAY on every
			// graceful stop.
			cfg.HTTP.HTTP2.Disabled = true
		}
		cfg.HTTP.DrainTimeout = r.shutdownTimeout()
		// Its metrics tell Stop when no request is left (see drained).
		cfg.HTTP.Debug.Addr = r.debugAddr
		cfg.HTTP.Debug.Prometheus.Enabled = true
		cfg.HTTP.Debug.Prometheus.Path = "/metrics"
		level := r.opts.LogLevel
		if r.opts.LogOutput == nil {
			// Nobody reads the lines; only a fatal one (a start error) is
			// wanted.
			level = "error"
		}
		if level != "" {
			cfg.Log.Level = configuration.Loglevel(level)
		}
	}
	if r.opts.Configure != nil {
		r.opts.Configure(cfg)
	}
	return cfg
}

// configYAML renders config() as a configuration file.
func (r *Registry) configYAML() ([]byte, error) {
	b, err := yaml.Marshal(r.config())
	if err != nil {
		return nil, fmt.Errorf("registry: rendering configuration: %w", err)
	}
	return b, nil
}
