package detect

// lowerByte lower-cases an ASCII letter and returns any other byte as it
// is.
func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
