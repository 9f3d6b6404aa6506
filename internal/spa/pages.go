package spa

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
)

// MaxPageSize is the largest page any list query returns: a larger
// page_size is read as MaxPageSize (AIP-158), so that no reply outgrows
// the transport.
const MaxPageSize = 500

// pageSize checks a requested page size: 0 means def, more than
// MaxPageSize means MaxPageSize, negative is invalid.
func pageSize(vs *violations, size int32, def int) int {
	switch {
	case size < 0:
		vs.add("page_size", "must not be negative")
		return def
	case size == 0:
		return def
	}
	return min(int(size), MaxPageSize)
}

// PageToken returns the opaque token (AIP-158) of the page after cursor
// (a list's position: a key), bound to the query that made it; "" when
// there is no next page (an empty cursor). query names the list and its
// filters.
func PageToken(query string, cursor []byte) string {
	if len(cursor) == 0 {
		return ""
	}
	b := []byte{pageTokenVersion}
	b = binary.BigEndian.AppendUint32(b, queryHash(query))
	b = append(b, cursor...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pageTokenVersion is the first byte of every page token.
const pageTokenVersion = 1

// parsePageToken returns the cursor a page token stands for; "" is the
// first page (nil). A token that was not made by PageToken for the same
// query is a violation.
func parsePageToken(vs *violations, token, query string) []byte {
	if token == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 6 || b[0] != pageTokenVersion {
		vs.add("page_token", "is not a token from a previous page")
		return nil
	}
	if binary.BigEndian.Uint32(b[1:5]) != queryHash(query) {
		vs.add("page_token", "belongs to a query with other filters; start again without it")
		return nil
	}
	return b[5:]
}

// seqPageToken is PageToken for a list ordered by a sequence; 0 is no
// next page.
func seqPageToken(query string, next uint64) string {
	if next == 0 {
		return ""
	}
	return PageToken(query, binary.BigEndian.AppendUint64(nil, next))
}

// parseSeqPageToken is parsePageToken for a list ordered by a sequence.
func parseSeqPageToken(vs *violations, token, query string) uint64 {
	c := parsePageToken(vs, token, query)
	if c == nil {
		return 0
	}
	if len(c) != 8 {
		vs.add("page_token", "is not a token from a previous page")
		return 0
	}
	return binary.BigEndian.Uint64(c)
}

func queryHash(query string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(query))
	return h.Sum32()
}
