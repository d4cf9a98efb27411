/* JPEG and PNG bytes, decoded as graft data images decodes them (1 and 3 channels) and,
 * when they decode, resized both ways: a refusal is fine, a crash, a leak or an image
 * of the wrong shape is not. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "runtime/data/image_decode.h"
#include "runtime/data/image_resize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet_log();
    for (int channels = 1; channels <= 3; channels += 2) {
        graft_image img;
        char why[256];
        graft_status s = graft_image_decode(data, size, channels, &img, why, sizeof why);
        fuzz_check_memory(s, "graft_image_decode");
        if (s != GRAFT_OK) {
            if (!why[0]) fuzz_fail("a refusal without a reason");
            continue;
        }
        if (img.width < 1 || img.height < 1 || img.channels != channels ||
            (size_t)img.width * (size_t)img.height > GRAFT_IMAGE_MAX_PIXELS)
            fuzz_fail("decoded image shape");
        uint8_t chw[3 * 7 * 5];
        for (int mode = 0; mode < 2; mode++) {
            s = graft_image_fit(&img, 7, 5, (graft_resize_mode)mode, chw);
            fuzz_check_memory(s, "graft_image_fit");
        }
        graft_image_free(&img);
    }
    return 0;
}
