package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testCert = `-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUW2x0ZXN0
-----END CERTIFICATE-----
`

func TestParseUserData(t *testing.T) {
	tests := []struct {
		name      string
		yaml      string
		want      UserData
		wantWarns []string
	}{
		{
			name: "shared example: external registry and stylus-level mapping rules",
			yaml: `#cloud-config
stylus:
  externalRegistries:
    registries:
      - domain: "registry.site.example:5000/edge-images"
        username: "mirror"
        password: "change-me"
        insecure: false
  registryMappingRules:
    "gcr.io/spectro-images-public": "registry.site.example:5000/edge-images/spectro"
    "us-docker.pkg.dev/palette-images": "registry.site.example:5000/edge-images/palette"
`,
			want: UserData{
				Mappings: map[string]string{
					"gcr.io/spectro-images-public":     "registry.site.example:5000/edge-images/spectro",
					"us-docker.pkg.dev/palette-images": "registry.site.example:5000/edge-images/palette",
				},
				Registries: []Registry{{Domain: "registry.site.example:5000/edge-images", Username: "mirror", Password: "change-me"}},
			},
		},
		{
			name: "registryCredentials with encoded password, trailing slash",
			yaml: `stylus:
  registryCredentials:
    domain: 10.10.254.254:8000/spectro-images/
    username: admin
    password: c2VjcmV0IzEy
    encodedPassword: true
    insecure: true
`,
			want: UserData{
				Registry:   "10.10.254.254:8000/spectro-images",
				Mappings:   map[string]string{},
				Registries: []Registry{{Domain: "10.10.254.254:8000/spectro-images", Username: "admin", Password: "secret#12", Insecure: true}},
			},
		},
		{
			name: "both places for mapping rules, certificates as string and list, aliases",
			yaml: `stylus:
  registryCredentials: &creds
    domain: reg.example.com
    username: u1
    password: "0123"
    certificates: |
` + indent(testCert, "      ") + `
  externalRegistries:
    registries:
      - domain: other.example.com:5000/
        username: u2
        password: p2
        repositoryName: edge
        certificates:
          - |
` + indent(testCert, "            ") + `
          - |
` + indent(testCert, "            ") + `
    registryMappingRules:
      quay.io/: reg.example.com/quay/
      gcr.io/x: reg.example.com/gcr
  registryMappingRules:
    gcr.io/x: reg.example.com/gcr/
`,
			want: UserData{
				Registry: "reg.example.com",
				Mappings: map[string]string{"quay.io": "reg.example.com/quay", "gcr.io/x": "reg.example.com/gcr"},
				Registries: []Registry{
					{Domain: "reg.example.com", Username: "u1", Password: "0123", Certificates: []string{testCert}},
					{Domain: "other.example.com:5000", Username: "u2", Password: "p2", RepositoryName: "edge", Certificates: []string{testCert, testCert}},
				},
			},
		},
		{
			name: "YAML 1.1 pitfall: password: #### is null",
			yaml: `stylus:
  registryCredentials:
    domain: reg.example.com
    username: admin
    password: ####
`,
			want: UserData{
				Registry:   "reg.example.com",
				Mappings:   map[string]string{},
				Registries: []Registry{{Domain: "reg.example.com", Username: "admin"}},
			},
			wantWarns: []string{`user-data.yaml: stylus.registryCredentials.password: empty or null while a username is set; an unquoted value starting with "#" is a YAML comment (password: #### reads as null): quote it, e.g. password: "####"`},
		},
		{
			name: "merge keys and aliases",
			yaml: `x-creds: &creds {username: shared, password: pw, insecure: yes}
stylus:
  externalRegistries:
    registries:
      - <<: *creds
        domain: a.example.com
      - <<: *creds
        domain: b.example.com
        username: own
`,
			want: UserData{
				Mappings: map[string]string{},
				Registries: []Registry{
					{Domain: "a.example.com", Username: "shared", Password: "pw", Insecure: true},
					{Domain: "b.example.com", Username: "own", Password: "pw", Insecure: true},
				},
			},
		},
		{
			name: "quoted hashes are a password",
			yaml: `stylus:
  registryCredentials:
    domain: reg.example.com
    username: admin
    password: "####"
`,
			want: UserData{
				Registry:   "reg.example.com",
				Mappings:   map[string]string{},
				Registries: []Registry{{Domain: "reg.example.com", Username: "admin", Password: "####"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUserData("user-data.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatalf("ParseUserData: %v", err)
			}
			tc.want.Path = "user-data.yaml"
			tc.want.Warnings = tc.wantWarns
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", *got, tc.want)
				for i := range got.Registries {
					if i < len(tc.want.Registries) && got.Registries[i].Password != tc.want.Registries[i].Password {
						t.Errorf("registry %d: password differs", i)
					}
				}
			}
		})
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

// Secret values used by the error cases: none may appear in any message.
const (
	secretPassword = "Sup3rS3cret-PW"
	secretDomain   = "hidden-registry.example:5000"
)

func TestParseUserDataErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{
			name: "missing domain",
			yaml: `stylus:
  externalRegistries:
    registries:
      - domain: ` + secretDomain + `
        username: a
        password: ` + secretPassword + `
      - username: a
        password: ` + secretPassword + `
`,
			want: "user-data.yaml: stylus.externalRegistries.registries[1].domain: missing",
		},
		{
			name: "malformed YAML",
			yaml: "#cloud-config\nstylus:\n  registryCredentials: : " + secretDomain + "\n    password: " + secretPassword + "\n",
			want: "user-data.yaml: invalid YAML: line 3: mapping values are not allowed in this context",
		},
		{
			name: "tab indentation",
			yaml: "stylus:\n\tregistryCredentials: {}\n",
			want: "user-data.yaml: invalid YAML: line 2: found character that cannot start any token",
		},
		{
			name: "no stylus",
			yaml: "#cloud-config\ninstall:\n  poweroff: true\n",
			want: "user-data.yaml: no stylus registry settings found (expected stylus.registryCredentials, stylus.externalRegistries or stylus.registryMappingRules)",
		},
		{
			name: "stylus without registry settings",
			yaml: "stylus:\n  site:\n    paletteEndpoint: api.spectrocloud.com\n",
			want: "user-data.yaml: no stylus registry settings found (expected stylus.registryCredentials, stylus.externalRegistries or stylus.registryMappingRules)",
		},
		{
			name: "empty file",
			yaml: "",
			want: "user-data.yaml: no stylus registry settings found (expected stylus.registryCredentials, stylus.externalRegistries or stylus.registryMappingRules)",
		},
		{
			name: "invalid base64",
			yaml: "stylus:\n  registryCredentials:\n    domain: " + secretDomain + "\n    username: u\n    password: \"" + secretPassword + "!!\"\n    encodedPassword: true\n",
			want: "user-data.yaml: stylus.registryCredentials.password: encodedPassword is true but the value is not valid base64",
		},
		{
			name: "insecure not a boolean",
			yaml: "stylus:\n  externalRegistries:\n    registries:\n      - domain: " + secretDomain + "\n        insecure: " + secretPassword + "\n",
			want: "user-data.yaml: stylus.externalRegistries.registries[0].insecure: must be true or false",
		},
		{
			name: "password is a list",
			yaml: "stylus:\n  registryCredentials:\n    domain: " + secretDomain + "\n    password: [" + secretPassword + "]\n",
			want: "user-data.yaml: stylus.registryCredentials.password: must be a string",
		},
		{
			name: "certificate not PEM",
			yaml: "stylus:\n  externalRegistries:\n    registries:\n      - domain: " + secretDomain + "\n        certificates: [\"" + secretPassword + "\"]\n",
			want: "user-data.yaml: stylus.externalRegistries.registries[0].certificates[0]: not a PEM certificate (no -----BEGIN CERTIFICATE----- line)",
		},
		{
			name: "registries not a list",
			yaml: "stylus:\n  externalRegistries:\n    registries:\n      domain: " + secretDomain + "\n",
			want: "user-data.yaml: stylus.externalRegistries.registries: must be a list",
		},
		{
			name: "domain with scheme",
			yaml: "stylus:\n  registryCredentials:\n    domain: https://" + secretDomain + "\n",
			want: "user-data.yaml: stylus.registryCredentials.domain: must be host[:port][/path] without a scheme",
		},
		{
			name: "duplicate key",
			yaml: "stylus:\n  registryCredentials:\n    domain: " + secretDomain + "\n    password: a\n    password: " + secretPassword + "\n",
			want: `user-data.yaml: stylus.registryCredentials: duplicate key "password"`,
		},
		{
			name: "conflicting mapping rules",
			yaml: `stylus:
  registryMappingRules:
    gcr.io/x: ` + secretDomain + `/a
  externalRegistries:
    registryMappingRules:
      gcr.io/x: ` + secretDomain + `/b
`,
			want: `user-data.yaml: stylus.externalRegistries.registryMappingRules["gcr.io/x"]: conflicts with stylus.registryMappingRules["gcr.io/x"] (different targets)`,
		},
		{
			name: "empty mapping target",
			yaml: "stylus:\n  registryMappingRules:\n    gcr.io/x: \"\"\n",
			want: `user-data.yaml: stylus.registryMappingRules["gcr.io/x"]: empty target`,
		},
		{
			name: "stylus not a mapping",
			yaml: "stylus: " + secretDomain + "\n",
			want: "user-data.yaml: stylus: must be a mapping",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ud, err := ParseUserData("user-data.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error; got %v", ud)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err, tc.want)
			}
			assertNoSecret(t, err.Error())
		})
	}
}

// assertNoSecret fails when msg holds a test secret or is not one line.
func assertNoSecret(t *testing.T, msg string) {
	t.Helper()
	for _, s := range []string{secretPassword, secretDomain, "hidden-registry"} {
		if strings.Contains(msg, s) {
			t.Errorf("message leaks %q: %s", s, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message is not one line: %q", msg)
	}
}

func TestUserDataWarningsHaveNoSecrets(t *testing.T) {
	yaml := "stylus:\n  registryCredentials:\n    domain: " + secretDomain + "\n    username: u\n    password:\n" +
		"  externalRegistries:\n    registries:\n      - domain: " + secretDomain + "/x\n        username: u\n        password: \"\"\n"
	ud, err := ParseUserData("user-data.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if len(ud.Warnings) != 2 {
		t.Fatalf("warnings = %q, want 2", ud.Warnings)
	}
	for _, w := range ud.Warnings {
		assertNoSecret(t, w)
		if !strings.HasPrefix(w, "user-data.yaml: stylus.") || !strings.Contains(w, ".password: ") {
			t.Errorf("warning does not name file and field: %q", w)
		}
	}
}

func TestRegistryFormattingMasksPassword(t *testing.T) {
	reg := Registry{Domain: "reg.example.com", Username: "u", Password: secretPassword, Certificates: []string{testCert}}
	ud := &UserData{Path: "ud.yaml", Registry: "reg.example.com", Registries: []Registry{reg}}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		for _, v := range []any{reg, &reg, ud, *ud, []Registry{reg}} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, secretPassword) {
				t.Errorf("%s of %T leaks the password: %s", format, v, out)
			}
		}
	}
	if s := reg.String(); !strings.Contains(s, "Password:***") || !strings.Contains(s, "reg.example.com") {
		t.Errorf("String() = %q", s)
	}
}

func TestReadUserData(t *testing.T) {
	if _, err := ReadUserData("-"); err == nil || !strings.Contains(err.Error(), "standard input") {
		t.Errorf("ReadUserData(-) = %v", err)
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	if _, err := ReadUserData(missing); err == nil || err.Error() != missing+": no such file or directory" {
		t.Errorf("ReadUserData(missing) = %v", err)
	}
	file := filepath.Join(dir, "user-data.yaml")
	if err := os.WriteFile(file, []byte("stylus:\n  registryCredentials:\n    domain: r.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ud, err := ReadUserData(file)
	if err != nil || ud.Path != file || ud.Registry != "r.example" {
		t.Errorf("ReadUserData = %+v, %v", ud, err)
	}
}
