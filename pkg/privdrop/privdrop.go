// Package privdrop gives up privileges once the capture socket is open:
// as root it switches to an unprivileged uid and gid (like tcpdump -Z),
// which clears every capability; otherwise it clears the capabilities the
// process holds (ambient CAP_NET_RAW, file capabilities). In both cases it
// sets no_new_privs so no exec can gain them back.
package privdrop

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseUser reads "uid" or "uid:gid" (numbers; the gid defaults to the
// uid).
func ParseUser(s string) (uid, gid int, err error) {
	us, gs, hasGID := strings.Cut(s, ":")
	uid, err = strconv.Atoi(us)
	if err != nil || uid < 0 {
		return 0, 0, fmt.Errorf("%q is not a numeric uid[:gid]", s)
	}
	gid = uid
	if hasGID {
		gid, err = strconv.Atoi(gs)
		if err != nil || gid < 0 {
			return 0, 0, fmt.Errorf("%q is not a numeric uid[:gid]", s)
		}
	}
	return uid, gid, nil
}
