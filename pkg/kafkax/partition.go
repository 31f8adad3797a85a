package kafkax

// Partition returns the partition of n that key maps to under the
// producers' partitioner (murmur2_random, the Java client's murmur2):
// (murmur2(key) & 0x7fffffff) % n. A producer that pins a record to
// Partition(key, n) writes it where librdkafka would have put a record with
// that key, so records pinned by one producer and keyed by another stay in
// one ordered stream. key must not be empty (the partitioner picks a random
// partition for an empty key).
func Partition(key []byte, n int) int32 {
	if n <= 0 {
		return 0
	}
	return int32((murmur2(key) & 0x7fffffff) % uint32(n))
}

// murmur2 is MurmurHash2 with the Java client's seed, as librdkafka's
// rd_murmur2 computes it.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
