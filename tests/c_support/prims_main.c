/* Test driver for the kernel library's fixed-point primitives: reads records of four
 * int32 (op, a, b, c) from argv[1], writes one int32 result per record to argv[2].
 * op 0: mq_srdhm(a, b); op 1: mq_rdbpot(a, b); op 2: mq_mbqm(a, b, c). */
#include <stdint.h>
#include <stdio.h>

#include "mq_kernels.h"

int main(int argc, char **argv) {
    FILE *fin, *fout;
    int32_t rec[4];
    if (argc != 3) {
        return 1;
    }
    fin = fopen(argv[1], "rb");
    fout = fopen(argv[2], "wb");
    if (fin == NULL || fout == NULL) {
        return 2;
    }
    while (fread(rec, sizeof(int32_t), 4, fin) == 4) {
        int32_t r = 0;
        if (rec[0] == 0) {
            r = mq_srdhm(rec[1], rec[2]);
        } else if (rec[0] == 1) {
            r = mq_rdbpot(rec[1], rec[2]);
        } else {
            r = mq_mbqm(rec[1], rec[2], rec[3]);
        }
        fwrite(&r, sizeof(int32_t), 1, fout);
    }
    fclose(fin);
    fclose(fout);
    return 0;
}
