package extfs

import "math/bits"

// Directory hash versions of an htree root; the unsigned ones treat name
// bytes above 0x7f as unsigned chars, the others as signed.
const (
	hashLegacy = iota
	hashHalfMD4
	hashTEA
	hashLegacyUnsigned
	hashHalfMD4Unsigned
	hashTEAUnsigned
)

// dirHash is the htree hash of a name, as Linux's ext4fs_dirhash computes
// it (without its low bit, which the index uses to mark collisions).
func dirHash(name string, version int, seed [4]uint32) uint32 {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	signed := version < hashLegacyUnsigned
	var hash uint32
	switch version {
	case hashLegacy, hashLegacyUnsigned:
		hash = legacyHash(name, signed)
	case hashHalfMD4, hashHalfMD4Unsigned:
		var in [8]uint32
		for p := name; ; p = p[32:] {
			str2hashbuf(p, in[:], signed)
			halfMD4(&buf, &in)
			if len(p) <= 32 {
				break
			}
		}
		hash = buf[1]
	case hashTEA, hashTEAUnsigned:
		var in [4]uint32
		for p := name; ; p = p[16:] {
			str2hashbuf(p, in[:], signed)
			tea(&buf, &in)
			if len(p) <= 16 {
				break
			}
		}
		hash = buf[0]
	}
	hash &^= 1
	if hash == 0x7fffffff<<1 { // the end-of-directory cookie of 32-bit readdir
		hash = (0x7fffffff - 1) << 1
	}
	return hash
}

// char widens a name byte as C's char does on the architecture the hash
// version names.
func char(c byte, signed bool) uint32 {
	if signed {
		return uint32(int32(int8(c)))
	}
	return uint32(c)
}

func legacyHash(name string, signed bool) uint32 {
	hash0, hash1 := uint32(0x12a3fe2d), uint32(0x37abe8f9)
	for i := range len(name) {
		hash := hash1 + (hash0 ^ char(name[i], signed)*7152373)
		if hash&0x80000000 != 0 {
			hash -= 0x7fffffff
		}
		hash1, hash0 = hash0, hash
	}
	return hash0 << 1
}

// str2hashbuf packs up to 4*len(buf) bytes of msg into buf, padding with
// its length.
func str2hashbuf(msg string, buf []uint32, signed bool) {
	pad := uint32(len(msg)) | uint32(len(msg))<<8
	pad |= pad << 16
	val := pad
	msg = msg[:min(len(msg), 4*len(buf))]
	j := 0
	for i := range len(msg) {
		val = char(msg[i], signed) + val<<8
		if i%4 == 3 {
			buf[j] = val
			j++
			val = pad
		}
	}
	if j < len(buf) {
		buf[j] = val
		j++
	}
	for ; j < len(buf); j++ {
		buf[j] = pad
	}
}

func tea(buf *[4]uint32, in *[4]uint32) {
	const delta = 0x9e3779b9
	var sum uint32
	b0, b1 := buf[0], buf[1]
	a, b, c, d := in[0], in[1], in[2], in[3]
	for range 16 {
		sum += delta
		b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >> 5) + b)
		b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >> 5) + d)
	}
	buf[0] += b0
	buf[1] += b1
}

// halfMD4 is MD4's transform cut to 8 words of input, with its own round
// constants.
func halfMD4(buf *[4]uint32, in *[8]uint32) {
	const (
		k2 = 0o13240474631
		k3 = 0o15666365641
	)
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	round := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s int) {
		*a = bits.RotateLeft32(*a+fn(b, c, d)+x, s)
	}

	round(f, &a, b, c, d, in[0], 3)
	round(f, &d, a, b, c, in[1], 7)
	round(f, &c, d, a, b, in[2], 11)
	round(f, &b, c, d, a, in[3], 19)
	round(f, &a, b, c, d, in[4], 3)
	round(f, &d, a, b, c, in[5], 7)
	round(f, &c, d, a, b, in[6], 11)
	round(f, &b, c, d, a, in[7], 19)

	round(g, &a, b, c, d, in[1]+k2, 3)
	round(g, &d, a, b, c, in[3]+k2, 5)
	round(g, &c, d, a, b, in[5]+k2, 9)
	round(g, &b, c, d, a, in[7]+k2, 13)
	round(g, &a, b, c, d, in[0]+k2, 3)
	round(g, &d, a, b, c, in[2]+k2, 5)
	round(g, &c, d, a, b, in[4]+k2, 9)
	round(g, &b, c, d, a, in[6]+k2, 13)

	round(h, &a, b, c, d, in[3]+k3, 3)
	round(h, &d, a, b, c, in[7]+k3, 9)
	round(h, &c, d, a, b, in[2]+k3, 11)
	round(h, &b, c, d, a, in[6]+k3, 15)
	round(h, &a, b, c, d, in[1]+k3, 3)
	round(h, &d, a, b, c, in[5]+k3, 9)
	round(h, &c, d, a, b, in[0]+k3, 11)
	round(h, &b, c, d, a, in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}
