package ipc

// SetVersions sets the major versions s speaks, before Start.
func SetVersions(s *Server, lo, hi uint16) { s.versionMin, s.versionMax = lo, hi }
