package chunkstore

import (
	"encoding/json"
	"fmt"
	"math/bits"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
)

// Params are the choices that fix how a store cuts and packs data. They are
// chosen at init and never change, since chunk boundaries depend on them.
type Params struct {
	// ChunkMin, ChunkAvg and ChunkMax bound content-defined chunks; ChunkAvg
	// is a power of two. The defaults were chosen by measurement on disk
	// images (docs/benchmarks.md, "Chunk sizes").
	ChunkMin int `json:"chunk_min"`
	ChunkAvg int `json:"chunk_avg"`
	ChunkMax int `json:"chunk_max"`
	// Segment is the span of disk chunked as one unit: every multiple of it
	// is a chunk boundary, which lets regions be chunked in parallel and an
	// incremental re-chunk exactly what a full backup would.
	Segment int64 `json:"segment"`
	// ZeroBlock is the granularity of zero detection: aligned blocks of this
	// many zero bytes are zero extents, never hashed or stored.
	ZeroBlock int `json:"zero_block"`
	// PackSize is the size at which a pack is sealed.
	PackSize int `json:"pack_size"`
	// ZstdLevel is the klauspost/compress encoder level (1 fastest .. 4 best).
	ZstdLevel int `json:"zstd_level"`
}

// DefaultParams are the parameters of a new store.
func DefaultParams() Params {
	return Params{
		ChunkMin:  128 << 10,
		ChunkAvg:  512 << 10,
		ChunkMax:  2 << 20,
		Segment:   16 << 20,
		ZeroBlock: 4 << 10,
		PackSize:  32 << 20,
		ZstdLevel: int(zstd.SpeedFastest),
	}
}

// Validate checks that p is usable.
func (p Params) Validate() error {
	switch {
	case p.ChunkAvg <= 0 || bits.OnesCount(uint(p.ChunkAvg)) != 1:
		return fmt.Errorf("chunk average %d is not a power of two", p.ChunkAvg)
	case p.ChunkMin < 64<<10 || p.ChunkMin >= p.ChunkAvg || p.ChunkMax <= p.ChunkAvg || p.ChunkMax > 16<<20:
		return fmt.Errorf("chunk sizes %d/%d/%d: want 64KiB <= min < avg < max <= 16MiB", p.ChunkMin, p.ChunkAvg, p.ChunkMax)
	case p.ZeroBlock < 512 || bits.OnesCount(uint(p.ZeroBlock)) != 1:
		return fmt.Errorf("zero block %d is not a power of two of at least 512", p.ZeroBlock)
	case p.Segment < int64(p.ChunkMax) || p.Segment%int64(p.ZeroBlock) != 0 || (1<<28)%p.Segment != 0:
		return fmt.Errorf("segment %d must hold a largest chunk, be a multiple of the zero block and divide 256 MiB", p.Segment)
	case p.PackSize < 1<<20 || p.PackSize > 1<<30:
		return fmt.Errorf("pack size %d out of range 1 MiB .. 1 GiB", p.PackSize)
	case p.ZstdLevel < int(zstd.SpeedFastest) || p.ZstdLevel > int(zstd.SpeedBestCompression):
		return fmt.Errorf("zstd level %d out of range", p.ZstdLevel)
	}
	return nil
}

// config is the sealed file "config": who the store is and how it cuts data.
type config struct {
	Version    int         `json:"version"`
	ID         string      `json:"id"`
	Polynomial chunker.Pol `json:"polynomial"`
	Params     Params      `json:"params"`
}

const storeVersion = 1

var configAD = []byte("bulwark config v1")

func decodeConfig(b []byte) (*config, error) {
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	if c.Version != storeVersion {
		return nil, fmt.Errorf("store version %d is not supported (this program reads version %d)", c.Version, storeVersion)
	}
	if c.Polynomial.Deg() != 53 || !c.Polynomial.Irreducible() {
		return nil, fmt.Errorf("config: chunker polynomial %v is not irreducible", c.Polynomial)
	}
	if err := c.Params.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}
