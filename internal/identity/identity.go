// Package identity says who a caller is. Outside the development mode a
// caller is its verified TLS client certificate: the organisation (ODS
// code) and role are in one URI subject alternative name,
//
//	urn:spa:identity:<ODS>:<role>     e.g. urn:spa:identity:RJZ30:discharge-team
//
// and the person or system is the subject's common name. Nothing the
// caller sends in request metadata can change them. In the development
// mode (plaintext, loopback only) the caller states them in metadata.
package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"spa/internal/authz"
	"spa/internal/spa"
)

// URIPrefix starts the identity URI of a certificate.
const URIPrefix = "urn:spa:identity:"

// Identity is a verified caller.
type Identity struct {
	ODS  string
	Role authz.Role
	// User names the person or system: the certificate's common name.
	User string
}

// Actor is the identity as recorded on events and in the access log.
func (id Identity) Actor() spa.Actor {
	return spa.Actor{ODS: id.ODS, Role: string(id.Role), User: id.User}
}

// Validate checks the organisation, role and user.
func (id Identity) Validate() error {
	var errs []error
	if !spa.IsODSCode(id.ODS) {
		errs = append(errs, fmt.Errorf("organisation %q is not an ODS code (1-9 upper-case letters or digits)", id.ODS))
	}
	if !id.Role.Valid() {
		errs = append(errs, fmt.Errorf("role %q is not one of %s", id.Role, roleList()))
	}
	if why := spa.CheckLabel(id.User); why != "" {
		errs = append(errs, fmt.Errorf("user %s", why))
	}
	return errors.Join(errs...)
}

// URI returns the identity's subject alternative name.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "urn", Opaque: strings.TrimPrefix(URIPrefix, "urn:") + id.ODS + ":" + string(id.Role)}
}

// FromCertificate reads the identity of a verified client certificate:
// exactly one identity URI, and the common name as the user.
func FromCertificate(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		s := u.String()
		rest, ok := strings.CutPrefix(s, URIPrefix)
		if !ok {
			continue
		}
		ods, role, ok := strings.Cut(rest, ":")
		if !ok {
			return Identity{}, fmt.Errorf("certificate identity %q: want %s<ODS>:<role>", s, URIPrefix)
		}
		found = append(found, Identity{ODS: ods, Role: authz.Role(role), User: cert.Subject.CommonName})
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("certificate %q has no %s<ODS>:<role> URI", cert.Subject.CommonName, URIPrefix)
	case 1:
	default:
		return Identity{}, fmt.Errorf("certificate %q has %d identity URIs; want one", cert.Subject.CommonName, len(found))
	}
	if err := found[0].Validate(); err != nil {
		return Identity{}, fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	return found[0], nil
}

// Parse reads "ODS/role" or "ODS/role/user", the form people type
// (spa-ctl --as, spa-ctl certs).
func Parse(s string) (Identity, error) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) < 2 {
		return Identity{}, fmt.Errorf("identity %q: want ODS/ROLE or ODS/ROLE/USER, ROLE one of %s", s, roleList())
	}
	id := Identity{ODS: parts[0], Role: authz.Role(parts[1])}
	if len(parts) == 3 {
		id.User = parts[2]
	}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("identity %q: %w", s, err)
	}
	return id, nil
}

func (id Identity) String() string {
	s := id.ODS + "/" + string(id.Role)
	if id.User != "" {
		s += "/" + id.User
	}
	return s
}

func roleList() string {
	names := make([]string, len(authz.Roles))
	for i, r := range authz.Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}
