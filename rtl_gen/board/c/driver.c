/* driver.c: run a compiled SPViT program on the accelerator and save its result region.
 * Written into the board directory by `spvit board` (rtl_gen/board/c/driver.c) next to spvit_regs.h.
 *
 *     driver IMAGE.bin INPUT.bin OUT.bin [TIMEOUT_MS]
 *
 *   IMAGE.bin  image.bin of `spvit compile --hw <this hardware>`; every address in it is relative to the
 *              base written into PROG_BASE, so it is copied into device memory as it is
 *   INPUT.bin  input_NNN.bin of `spvit board-inputs`: the pieces of the image's input region for one
 *              image, and where the result region lies (format: driver/inputs.py)
 *   OUT.bin    the result region after the run (decode it with golden.interp.read_results; the input
 *              set holds the golden model's expected results)
 *
 * Every register offset and field comes from the generated spvit_regs.h. Exit status: 0 done, 1 usage
 * or I/O error, 2 the CSR window holds another accelerator, 3 the program ended with an error code
 * (printed as the golden interpreter words it), 4 timeout.
 *
 * Platforms, chosen when compiling; each provides the functions under "platform" below:
 *   (default)           Linux (PetaLinux): the CSR window through UIO ($SPVIT_UIO, default /dev/uio0, map 0),
 *                       device memory through u-dma-buf ($SPVIT_UDMABUF, default udmabuf0; opened with
 *                       O_SYNC, so uncached), the interrupt through UIO (read() bounded by poll())
 *   -DSPVIT_SIM_SOCKET  the simulated RTL: requests over the Unix socket $SPVIT_SIM_SOCKET, served by the
 *                       cocotb bench (sim/tb_board.py), so this same file runs against the RTL in the tests
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "spvit_regs.h"

#define INPUT_MAGIC 0x49565053u      /* "SPVI" */
#define INPUT_VERSION 1u
#define POLL_MS 1

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("driver: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---------------------------------------------------------------- platform */
static void plat_open(void);
static uint32_t reg_read(uint32_t offset);
static void reg_write(uint32_t offset, uint32_t value);
static uint64_t buf_alloc(size_t size);                 /* physical address of `size` bytes */
static void buf_write(size_t offset, const uint8_t *data, size_t n);
static void buf_read(size_t offset, uint8_t *data, size_t n);
static void irq_arm(void);                              /* before START */
static int irq_wait(int timeout_ms);                    /* 1: interrupt, 0: timeout */
static void plat_close(void);

#ifdef SPVIT_SIM_SOCKET
static FILE *sock_in, *sock_out;
static char *reply;
static size_t reply_cap;

static const char *request(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(sock_out, fmt, ap);
    va_end(ap);
    fputc('\n', sock_out);
    fflush(sock_out);
    ssize_t n = getline(&reply, &reply_cap, sock_in);
    if (n <= 0)
        die("the simulation closed the socket");
    reply[strcspn(reply, "\n")] = 0;
    if (strncmp(reply, "error", 5) == 0)
        die("the simulation answered: %s", reply);
    return reply;
}

static void plat_open(void)
{
    const char *path = getenv("SPVIT_SIM_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!path || strlen(path) >= sizeof addr.sun_path)
        die("set SPVIT_SIM_SOCKET to the bench's socket path");
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("cannot connect to %s", path);
    sock_in = fdopen(fd, "r");
    sock_out = fdopen(dup(fd), "w");
    if (!sock_in || !sock_out)
        die("fdopen failed");
}

static uint32_t reg_read(uint32_t offset) { return (uint32_t)strtoul(request("R %" PRIu32, offset), NULL, 10); }
static void reg_write(uint32_t offset, uint32_t value) { request("W %" PRIu32 " %" PRIu32, offset, value); }
static uint64_t buf_alloc(size_t size) { return strtoull(request("A %zu", size), NULL, 10); }
static void irq_arm(void) {}
static int irq_wait(int timeout_ms) { return atoi(request("I %d", timeout_ms)); }
static void plat_close(void) { request("Q"); }

static void buf_write(size_t offset, const uint8_t *data, size_t n)
{
    enum { CHUNK = 2048 };
    char hex[2 * CHUNK + 1];
    for (size_t at = 0; at < n; at += CHUNK) {
        size_t k = n - at < CHUNK ? n - at : CHUNK;
        for (size_t i = 0; i < k; i++)
            snprintf(hex + 2 * i, 3, "%02x", data[at + i]);
        request("M %zu %s", offset + at, hex);
    }
}

static void buf_read(size_t offset, uint8_t *data, size_t n)
{
    const char *hex = request("G %zu %zu", offset, n);
    if (strlen(hex) != 2 * n)
        die("short read from the simulation");
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        data[i] = (uint8_t)v;
    }
}
#else
static int uio_fd = -1;
static volatile uint32_t *csr;
static uint8_t *dma;
static size_t dma_size;

static void plat_open(void)
{
    const char *uio = getenv("SPVIT_UIO") ? getenv("SPVIT_UIO") : "/dev/uio0";
    uio_fd = open(uio, O_RDWR | O_SYNC);
    if (uio_fd < 0)
        die("cannot open %s (the accelerator's UIO device, see the board directory's README.md)", uio);
    void *p = mmap(NULL, SPVIT_REGMAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, uio_fd, 0);
    if (p == MAP_FAILED)
        die("cannot map the CSR window of %s", uio);
    csr = p;
}

static uint32_t reg_read(uint32_t offset) { return csr[offset / 4]; }
static void reg_write(uint32_t offset, uint32_t value) { csr[offset / 4] = value; }

static uint64_t read_sysfs(const char *name, const char *what)
{
    char path[256];
    snprintf(path, sizeof path, "/sys/class/u-dma-buf/%s/%s", name, what);
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (!f || fscanf(f, "%llx", &v) != 1)
        die("cannot read %s (is the u-dma-buf module loaded?)", path);
    fclose(f);
    return v;
}

static uint64_t buf_alloc(size_t size)
{
    const char *name = getenv("SPVIT_UDMABUF") ? getenv("SPVIT_UDMABUF") : "udmabuf0";
    char dev[256];
    snprintf(dev, sizeof dev, "/dev/%s", name);
    uint64_t phys = read_sysfs(name, "phys_addr");
    char path[256];
    snprintf(path, sizeof path, "/sys/class/u-dma-buf/%s/size", name);
    FILE *f = fopen(path, "r");
    unsigned long long total = 0;
    if (!f || fscanf(f, "%llu", &total) != 1)
        die("cannot read %s", path);
    fclose(f);
    if (total < size)
        die("%s holds %llu bytes, the image needs %zu: give u-dma-buf a larger size", dev, total, size);
    int fd = open(dev, O_RDWR | O_SYNC);
    void *p = fd < 0 ? MAP_FAILED : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("cannot map %s", dev);
    dma = p;
    dma_size = size;
    return phys;
}

static void buf_write(size_t offset, const uint8_t *data, size_t n) { memcpy(dma + offset, data, n); }
static void buf_read(size_t offset, uint8_t *data, size_t n) { memcpy(data, dma + offset, n); }

static void irq_arm(void)
{
    uint32_t one = 1;
    if (write(uio_fd, &one, sizeof one) != sizeof one)
        die("cannot enable the UIO interrupt");
}

static int irq_wait(int timeout_ms)
{
    struct pollfd p = {.fd = uio_fd, .events = POLLIN};
    uint32_t count;
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    return read(uio_fd, &count, sizeof count) == sizeof count;
}

static void plat_close(void)
{
    if (dma)
        munmap(dma, dma_size);
    munmap((void *)csr, SPVIT_REGMAP_SIZE);
    close(uio_fd);
}
#endif

/* ---------------------------------------------------------------- the run */
#define FIELD(reg, field, word) (((word) & SPVIT_##reg##_##field##_MASK) >> SPVIT_##reg##_##field##_SHIFT)
#define BITS(reg, field, value) (((uint32_t)(value) << SPVIT_##reg##_##field##_SHIFT) & SPVIT_##reg##_##field##_MASK)

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0)
        die("cannot read %s", path);
    long n = ftell(f);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    rewind(f);
    if (n < 0 || !data || fread(data, 1, (size_t)n, f) != (size_t)n)
        die("cannot read %s", path);
    fclose(f);
    *size = (size_t)n;
    return data;
}

static uint32_t word_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int check_identity(void)
{
    static const struct { uint32_t offset, want; const char *name; } ids[] = {
        {SPVIT_ID_OFFSET, SPVIT_ID_VALUE, "ID"},
        {SPVIT_VERSION_OFFSET, SPVIT_VERSION_VALUE, "VERSION"},
        {SPVIT_HW_IDENT_OFFSET, SPVIT_HW_IDENT_VALUE, "HW_IDENT"},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        uint32_t got = reg_read(ids[i].offset);
        if (got != ids[i].want) {
            fprintf(stderr, "driver: %s reads 0x%08" PRIx32 ", spvit_regs.h says 0x%08" PRIx32 ": the CSR window holds "
                    "another accelerator (bitstream, UIO device or header of another hardware)\n",
                    ids[i].name, got, ids[i].want);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s IMAGE.bin INPUT.bin OUT.bin [TIMEOUT_MS]\n", argv[0]);
        return 1;
    }
    int timeout_ms = argc == 5 ? atoi(argv[4]) : 10000;
    size_t image_size, input_size;
    uint8_t *image = read_file(argv[1], &image_size);
    uint8_t *input = read_file(argv[2], &input_size);
    if (input_size < 20 || word_at(input) != INPUT_MAGIC || word_at(input + 4) != INPUT_VERSION)
        die("%s is not an input file of spvit board-inputs", argv[2]);
    uint32_t res_offset = word_at(input + 8), res_bytes = word_at(input + 12), runs = word_at(input + 16);
    if ((uint64_t)res_offset + res_bytes > image_size)
        die("%s does not belong to %s (its result region lies outside the image)", argv[2], argv[1]);

    plat_open();
    if (!check_identity())
        return 2;
    if (FIELD(STATUS, BUSY, reg_read(SPVIT_STATUS_OFFSET)))
        die("the accelerator is busy with an earlier run; wait for it or reload the bitstream");

    /* the image, then the input's pieces, into device memory; the result region cleared */
    uint64_t base = buf_alloc(image_size);
    if (base % 4096)
        die("the device buffer at 0x%" PRIx64 " is not 4096-byte aligned", base);
    size_t at = 20;
    for (uint32_t r = 0; r < runs; r++) {
        if (at + 8 > input_size)
            die("%s is truncated", argv[2]);
        uint32_t offset = word_at(input + at), n = word_at(input + at + 4);
        if (at + 8 + n > input_size || (uint64_t)offset + n > image_size)
            die("%s is truncated or does not belong to %s", argv[2], argv[1]);
        memcpy(image + offset, input + at + 8, n);
        at += 8 + n;
    }
    memset(image + res_offset, 0, res_bytes);
    buf_write(0, image, image_size);

    /* start: PROG_BASE, the interrupt, START */
    reg_write(SPVIT_IRQ_STATUS_OFFSET, BITS(IRQ_STATUS, DONE, 1));
    reg_write(SPVIT_PROG_BASE_LO_OFFSET, (uint32_t)base);
    reg_write(SPVIT_PROG_BASE_HI_OFFSET, (uint32_t)(base >> 32));
    reg_write(SPVIT_IRQ_ENABLE_OFFSET, BITS(IRQ_ENABLE, DONE, 1));
    irq_arm();
    reg_write(SPVIT_CTRL_OFFSET, BITS(CTRL, START, 1));

    /* wait for STATUS.DONE: woken by the interrupt, checked at least every POLL_MS */
    int left = timeout_ms;
    while (!FIELD(STATUS, DONE, reg_read(SPVIT_STATUS_OFFSET))) {
        if (left <= 0) {
            uint32_t lo = reg_read(SPVIT_CYCLES_LO_OFFSET);
            uint64_t cycles = (uint64_t)reg_read(SPVIT_CYCLES_HI_OFFSET) << 32 | lo;
            printf("timeout: no end of the run after %d ms: the accelerator is at descriptor %" PRIu32 " with %" PRIu32
                   " tokens after %" PRIu64 " cycles\n", timeout_ms, reg_read(SPVIT_DESC_INDEX_OFFSET),
                   reg_read(SPVIT_TOKENS_OFFSET), cycles);
            plat_close();
            return 4;
        }
        int step = left < POLL_MS ? left : POLL_MS;
        irq_wait(step);
        left -= step;
    }
    reg_write(SPVIT_IRQ_STATUS_OFFSET, BITS(IRQ_STATUS, DONE, 1));

    uint32_t code = FIELD(ERROR_CODE, CODE, reg_read(SPVIT_ERROR_CODE_OFFSET));
    if (code) {
        static const char *const names[] = SPVIT_ERROR_NAMES;
        static const char *const texts[] = SPVIT_ERROR_TEXTS;
        uint32_t index = FIELD(ERROR_INDEX, INDEX, reg_read(SPVIT_ERROR_INDEX_OFFSET));
        long shown = index == SPVIT_ERROR_INDEX_HEADER ? -1 : (long)index;
        if (code < SPVIT_NUM_ERRORS)
            printf("%s at descriptor %ld: %s\n", names[code], shown, texts[code]);
        else
            printf("unknown error code %" PRIu32 " at descriptor %ld\n", code, shown);
        plat_close();
        return 3;
    }
    uint32_t lo = reg_read(SPVIT_CYCLES_LO_OFFSET);                  /* latches CYCLES_HI */
    uint64_t cycles = (uint64_t)reg_read(SPVIT_CYCLES_HI_OFFSET) << 32 | lo;
    printf("done: %" PRIu64 " cycles, KEPT", cycles);
    for (unsigned s = 0; s < SPVIT_STAGES_MAX; s++)
        printf(" %" PRIu32, FIELD(KEPT0, COUNT, reg_read(SPVIT_KEPT_OFFSET(s))));
    printf("\n");

    uint8_t *results = malloc(res_bytes ? res_bytes : 1);
    if (!results)
        die("out of memory");
    buf_read(res_offset, results, res_bytes);
    FILE *out = fopen(argv[3], "wb");
    if (!out || fwrite(results, 1, res_bytes, out) != res_bytes || fclose(out) != 0)
        die("cannot write %s", argv[3]);
    plat_close();
    free(results);
    free(image);
    free(input);
    return 0;
}
