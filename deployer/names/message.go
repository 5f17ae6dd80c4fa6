package names

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// headerLen is the size of a DNS header: anything shorter is dropped.
	headerLen = 12
	// maxQuery bounds a query on both transports (one question and an OPT
	// record need far less); it is also the UDP payload size this server
	// advertises in its own OPT records (RFC 6891, DNS flag day 2020).
	maxQuery = 1232
	// minUDPAnswer is the answer size a client without EDNS accepts over UDP.
	minUDPAnswer = 512
	// maxUDPAnswer bounds an answer over UDP whatever size the client
	// advertises, and is the size the relay advertises upstream.
	maxUDPAnswer = 4096
	// maxTCPAnswer is what the 2-byte length of DNS over TCP can frame.
	maxTCPAnswer = 65535
	// ttl is the TTL, in seconds, of every answer for a declared name.
	ttl = 2
	// rcodeBadVers is EDNS's BADVERS (RFC 6891): 16 does not fit the
	// header's 4 bits, its upper bits go in the OPT record.
	rcodeBadVers dnsmessage.RCode = 16
)

// query is a parsed query: the header, the one question, and EDNS.
type query struct {
	hdr dnsmessage.Header
	// question is q; hasQuestion is false when none could be read.
	q           dnsmessage.Question
	hasQuestion bool
	// edns: the query had an OPT record, with the client's UDP payload
	// size (size, 512 without) and its DNSSEC OK bit (do).
	edns bool
	size int
	do   bool
}

// parse reads msg as a query. ok is false when nothing is to be sent back
// (shorter than a header, or a response: answering responses would let two
// servers loop). rcode is RCodeSuccess for a query to answer, else the
// error to answer it with.
func parse(msg []byte) (q query, rcode dnsmessage.RCode, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return q, 0, false
	}
	q.hdr = h
	q.size = minUDPAnswer
	if h.OpCode != 0 { // only QUERY: no NOTIFY, UPDATE, IQUERY, STATUS
		return q, dnsmessage.RCodeNotImplemented, true
	}
	qd := binary.BigEndian.Uint16(msg[4:])
	an := binary.BigEndian.Uint16(msg[6:])
	ns := binary.BigEndian.Uint16(msg[8:])
	ar := binary.BigEndian.Uint16(msg[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return q, dnsmessage.RCodeFormatError, true
	}
	if q.q, err = p.Question(); err != nil {
		return q, dnsmessage.RCodeFormatError, true
	}
	q.hasQuestion = true
	if ar == 1 {
		if err := p.SkipAllQuestions(); err != nil {
			return q, dnsmessage.RCodeFormatError, true
		}
		if err := p.SkipAllAnswers(); err != nil {
			return q, dnsmessage.RCodeFormatError, true
		}
		if err := p.SkipAllAuthorities(); err != nil {
			return q, dnsmessage.RCodeFormatError, true
		}
		rh, err := p.AdditionalHeader()
		if err != nil || rh.Type != dnsmessage.TypeOPT || rh.Name.Length != 1 || rh.Name.Data[0] != '.' {
			return q, dnsmessage.RCodeFormatError, true
		}
		if _, err := p.OPTResource(); err != nil {
			return q, dnsmessage.RCodeFormatError, true
		}
		q.edns = true
		q.size = min(max(int(rh.Class), minUDPAnswer), maxUDPAnswer)
		q.do = rh.DNSSECAllowed()
		if version := byte(rh.TTL >> 16); version != 0 {
			return q, rcodeBadVers, true
		}
	}
	if q.q.Class != dnsmessage.ClassINET {
		return q, dnsmessage.RCodeNotImplemented, true
	}
	switch q.q.Type {
	case dnsmessage.TypeOPT, 251 /* IXFR */, dnsmessage.TypeAXFR, 253 /* MAILB */, 254 /* MAILA */, dnsmessage.TypeALL:
		// Zone transfers and meta types have nothing to give here, and
		// ANY is the classic amplifier (RFC 8482).
		return q, dnsmessage.RCodeNotImplemented, true
	}
	return q, dnsmessage.RCodeSuccess, true
}

// limit is the largest answer the client takes on this transport.
func (q *query) limit(tcp bool) int {
	if tcp {
		return maxTCPAnswer
	}
	return q.size
}

// reply builds this server's own answer: rcode (extended codes go in the
// OPT record), the question when there is one, an A record for addr when
// it is valid, and an OPT record when the query had one.
func (q *query) reply(rcode dnsmessage.RCode, authoritative, truncated bool, addr []byte) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), dnsmessage.Header{
		ID:                 q.hdr.ID,
		Response:           true,
		OpCode:             q.hdr.OpCode,
		Authoritative:      authoritative,
		Truncated:          truncated,
		RecursionDesired:   q.hdr.RecursionDesired,
		RecursionAvailable: true,
		CheckingDisabled:   q.hdr.CheckingDisabled,
		RCode:              rcode & 0xF,
	})
	b.EnableCompression()
	var errs []error
	if q.hasQuestion {
		errs = append(errs, b.StartQuestions(), b.Question(q.q))
		if addr != nil {
			errs = append(errs, b.StartAnswers(), b.AResource(dnsmessage.ResourceHeader{
				Name:  q.q.Name,
				Type:  dnsmessage.TypeA,
				Class: dnsmessage.ClassINET,
				TTL:   ttl,
			}, dnsmessage.AResource{A: [4]byte(addr)}))
		}
	}
	if q.edns {
		var rh dnsmessage.ResourceHeader
		errs = append(errs, rh.SetEDNS0(maxQuery, rcode, q.do), b.StartAdditionals(), b.OPTResource(rh, dnsmessage.OPTResource{}))
	}
	out, err := b.Finish()
	if errors.Join(append(errs, err)...) != nil {
		// Only a question the parser accepted is ever packed: cannot happen.
		return nil
	}
	return out
}

// upstreamQuery is the query the relay sends for q: the same question and
// RD and CD bits, an OPT record advertising maxUDPAnswer (with the
// client's DO bit) only when the client sent one, so the answer needs no
// rewriting. Its ID is set per attempt.
func (q *query) upstreamQuery() ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{
		RecursionDesired: q.hdr.RecursionDesired,
		CheckingDisabled: q.hdr.CheckingDisabled,
	})
	errs := []error{b.StartQuestions(), b.Question(q.q)}
	if q.edns {
		var rh dnsmessage.ResourceHeader
		errs = append(errs, rh.SetEDNS0(maxUDPAnswer, dnsmessage.RCodeSuccess, q.do), b.StartAdditionals(), b.OPTResource(rh, dnsmessage.OPTResource{}))
	}
	out, err := b.Finish()
	if err := errors.Join(append(errs, err)...); err != nil {
		return nil, fmt.Errorf("names: build upstream query: %w", err)
	}
	return out, nil
}

// checkAnswer reads the header of resp, an upstream's answer to the query
// q sent with id: it must be a response to that ID and echo the question
// (names compared without case: some resolvers randomise it). An error
// answer without a question (some servers send FORMERR or SERVFAIL so) is
// returned too, for the caller to judge by its RCode.
func (q *query) checkAnswer(resp []byte, id uint16) (dnsmessage.Header, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil || !h.Response || h.ID != id || h.OpCode != 0 {
		return h, false
	}
	if binary.BigEndian.Uint16(resp[4:]) == 0 {
		return h, h.RCode != dnsmessage.RCodeSuccess
	}
	rq, err := p.Question()
	if err != nil {
		return h, false
	}
	return h, rq.Type == q.q.Type && rq.Class == q.q.Class && equalFold(rq.Name, q.q.Name)
}

// truncate fits resp, a relayed answer, to the client's limit: as it is
// when it fits, else its header with TC set, the question and the OPT
// record, so the client asks again over TCP (RFC 2181 section 9).
func (q *query) truncate(resp []byte, h dnsmessage.Header, tcp bool) []byte {
	if len(resp) <= q.limit(tcp) {
		binary.BigEndian.PutUint16(resp, q.hdr.ID)
		return resp
	}
	return q.reply(h.RCode, h.Authoritative, true, nil)
}

// equalFold compares two names the way DNS does: ASCII letters without case.
func equalFold(a, b dnsmessage.Name) bool {
	if a.Length != b.Length {
		return false
	}
	for i := range int(a.Length) {
		if lowerASCII(a.Data[i]) != lowerASCII(b.Data[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// canonical is the lookup key of a name: ASCII lower case, no trailing dot.
func canonical(name string) string {
	b := []byte(name)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	if n := len(b); n > 0 && b[n-1] == '.' {
		b = b[:n-1]
	}
	return string(b)
}
