# CRC32C (Castagnoli), the checksum of every frame and segment header.
#
# Invariants:
#   - crc32c_update(c, p, n) continues a raw (pre-inverted) register; crc32c() applies the
#     standard ~init/~final, so crc32c(b"123456789") == 0xE3069283 (the iSCSI check value).
#   - The SSE4.2 path and the slicing-by-8 table path give identical results on every input
#     (tests compare them); which one runs is decided once, at module import, from the CPU.
#     eskcrc_force_table() is a test seam: it lets tests run the frame checksum, the writer
#     and the scanner on the table path of a CPU that has SSE4.2.
#   - Nothing here touches Python objects: everything is noexcept nogil.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    static uint32_t eskcrc_table[8][256];
    static int eskcrc_hw = 0;           /* the path in use: 1 = SSE4.2 */
    static int eskcrc_hw_cpu = 0;       /* what the CPU supports */

    static void eskcrc_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
            eskcrc_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = eskcrc_table[0][i];
            for (int t = 1; t < 8; t++) {
                c = eskcrc_table[0][c & 0xFF] ^ (c >> 8);
                eskcrc_table[t][i] = c;
            }
        }
    #if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
        __builtin_cpu_init();
        eskcrc_hw_cpu = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    #endif
        eskcrc_hw = eskcrc_hw_cpu;
    }

    /* Tests only: 1 forces the table path, 0 returns to the CPU's; returns the old setting. */
    static int eskcrc_force_table(int on) {
        int was = eskcrc_hw_cpu && !eskcrc_hw;
        eskcrc_hw = on ? 0 : eskcrc_hw_cpu;
        return was;
    }

    /* Portable slicing-by-8: eight table lookups per 8 input bytes. */
    static uint32_t eskcrc_sw(uint32_t c, const uint8_t *p, size_t n) {
        while (n && ((uintptr_t)p & 7)) { c = eskcrc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8); n--; }
        while (n >= 8) {
            uint64_t v; memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            v = __builtin_bswap64(v);
    #endif
            v ^= c;
            c = eskcrc_table[7][v & 0xFF] ^ eskcrc_table[6][(v >> 8) & 0xFF] ^
                eskcrc_table[5][(v >> 16) & 0xFF] ^ eskcrc_table[4][(v >> 24) & 0xFF] ^
                eskcrc_table[3][(v >> 32) & 0xFF] ^ eskcrc_table[2][(v >> 40) & 0xFF] ^
                eskcrc_table[1][(v >> 48) & 0xFF] ^ eskcrc_table[0][v >> 56];
            p += 8; n -= 8;
        }
        while (n--) c = eskcrc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        return c;
    }

    #if (defined(__x86_64__)) && defined(__GNUC__)
    /* One crc32 instruction per 8 bytes (3-cycle latency, so ~8 bytes / 3 cycles). */
    __attribute__((target("sse4.2")))
    static uint32_t eskcrc_hw_update(uint32_t c, const uint8_t *p, size_t n) {
        uint64_t c64 = c;
        while (n >= 8) { uint64_t v; memcpy(&v, p, 8); c64 = __builtin_ia32_crc32di(c64, v); p += 8; n -= 8; }
        uint32_t c32 = (uint32_t)c64;
        if (n >= 4) { uint32_t v; memcpy(&v, p, 4); c32 = __builtin_ia32_crc32si(c32, v); p += 4; n -= 4; }
        while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
        return c32;
    }
    #define ESKCRC_HAVE_HW 1
    #else
    static uint32_t eskcrc_hw_update(uint32_t c, const uint8_t *p, size_t n) { return eskcrc_sw(c, p, n); }
    #define ESKCRC_HAVE_HW 0
    #endif

    static inline uint32_t eskcrc_update(uint32_t c, const uint8_t *p, size_t n) {
        return eskcrc_hw ? eskcrc_hw_update(c, p, n) : eskcrc_sw(c, p, n);
    }
    """
    void eskcrc_init() noexcept nogil
    int eskcrc_force_table(int on) noexcept nogil
    int eskcrc_hw
    int eskcrc_hw_cpu
    uint32_t eskcrc_sw(uint32_t c, const uint8_t *p, size_t n) noexcept nogil
    uint32_t eskcrc_update(uint32_t c, const uint8_t *p, size_t n) noexcept nogil

eskcrc_init()


cdef inline uint32_t crc32c_frame(uint32_t length, const uint8_t *payload, size_t n) noexcept nogil:
    # A frame's checksum covers its 4 length bytes (little-endian) and then the payload, so a
    # flipped length bit is caught too.  ~0 init / ~0 final: an all-zero header never checks.
    cdef uint8_t lb[4]
    lb[0] = length & 0xFF
    lb[1] = (length >> 8) & 0xFF
    lb[2] = (length >> 16) & 0xFF
    lb[3] = (length >> 24) & 0xFF
    cdef uint32_t c = eskcrc_update(0xFFFFFFFFu, lb, 4)
    return eskcrc_update(c, payload, n) ^ 0xFFFFFFFFu
