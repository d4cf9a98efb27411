/* idx files (plain or gzip): one part is read with graft_idx_read; two parts are the
 * images and labels of a Fashion-MNIST split, loaded with graft_fmnist_load:
 *   IMAGES_IDX\n--8<--\nLABELS_IDX */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "runtime/data/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    const char *dir = fuzz_tmpdir();
    const uint8_t *parts[2];
    size_t lens[2];
    int n = fuzz_split(data, size, parts, lens, 2);
    if (n == 1) {
        fuzz_write(dir, "input.idx", data, size);
        char path[512];
        snprintf(path, sizeof path, "%s/input.idx", dir);
        graft_idx idx;
        graft_status s = graft_idx_read(&idx, path);
        fuzz_check_memory(s, "graft_idx_read");
        if (s != GRAFT_OK) return 0;
        size_t items = 1;
        for (int d = 1; d < idx.ndim; d++)
            items *= idx.dims[d];
        if (idx.count != idx.dims[0] || idx.item_size != items) fuzz_fail("idx sizes");
        size_t sum = 0; /* every byte is readable */
        for (size_t i = 0; i < idx.count * idx.item_size; i++)
            sum += idx.data[i];
        (void)sum;
        graft_idx_free(&idx);
        return 0;
    }
    fuzz_write(dir, "fz-images-idx3-ubyte.gz", parts[0], lens[0]);
    fuzz_write(dir, "fz-labels-idx1-ubyte.gz", parts[1], lens[1]);
    graft_fmnist fm;
    graft_status s = graft_fmnist_load(&fm, dir, "fz");
    fuzz_check_memory(s, "graft_fmnist_load");
    if (s != GRAFT_OK) return 0;
    for (size_t i = 0; i < fm.count; i++)
        if (fm.labels[i] < 0 || fm.labels[i] >= 10) fuzz_fail("fmnist label out of range");
    graft_fmnist_free(&fm);
    return 0;
}
