/* Unit tests of the runtime kernels against vectors computed by esc2c.quant.intparams. */
#include <stdio.h>
#include <string.h>

#include "esc2c_runtime.h"
#include "kernel_vectors.h"

#if defined(CMSIS_NN_USE_SINGLE_ROUNDING)
#define EXPECT(name) name##_expect_single
#define MODE "single"
#else
#define EXPECT(name) name##_expect_double
#define MODE "double"
#endif

static int failures = 0;

static void check_s8(const char *what, const int8_t *got, const int8_t *want, int n)
{
    for (int i = 0; i < n; i++)
    {
        if (got[i] != want[i])
        {
            printf("FAIL %s [%s]: element %d got %d want %d\n", what, MODE, i, got[i], want[i]);
            failures++;
            return;
        }
    }
    printf("ok   %s [%s] (%d elements)\n", what, MODE, n);
}

static void test_requantize(void)
{
    for (int i = 0; i < REQ_N; i++)
    {
        const int32_t got = esc2c_requantize(req_val[i], req_mult[i], req_shift[i]);
        if (got != EXPECT(req)[i])
        {
            printf("FAIL requantize [%s]: val %ld mult %ld shift %ld got %ld want %ld\n", MODE, (long)req_val[i],
                   (long)req_mult[i], (long)req_shift[i], (long)got, (long)EXPECT(req)[i]);
            failures++;
            return;
        }
    }
    printf("ok   requantize [%s] (%d cases)\n", MODE, REQ_N);
}

static void test_add(void)
{
    int8_t out[ADD_N];
    for (int k = 0; k < ADD_SETS; k++)
    {
        const int32_t *p = &add_params[k * 12];
        esc2c_add_s8(&add_a[k * ADD_N], &add_b[k * ADD_N], out, ADD_N, p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                     p[7], p[8], p[9], p[10], p[11]);
        check_s8("add", out, &EXPECT(add)[k * ADD_N], ADD_N);
    }
    /* in place over the first input */
    int8_t buf[ADD_N];
    memcpy(buf, add_a, ADD_N);
    const int32_t *p = add_params;
    esc2c_add_s8(buf, add_b, buf, ADD_N, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]);
    check_s8("add in place", buf, EXPECT(add), ADD_N);
}

static void test_requantize_s8(void)
{
    int8_t out[ADD_N];
    esc2c_requantize_s8(rq_in, out, ADD_N, RQ_PARAMS);
    check_s8("requantize_s8", out, EXPECT(rq), ADD_N);
}

static void test_avgpool(void)
{
    int8_t out[AP_OUT_SIZE];
    const int32_t d[] = {AP_DIMS};
    const int32_t off[] = {AP_OFFSETS};
    int rc = esc2c_avgpool_rescale_s8(ap_in, d[0], d[1], d[2], out, d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10],
                                      off[0], ap_mult, ap_shift, off[1], -128, 127);
    if (rc != 0)
    {
        printf("FAIL avgpool_rescale returned %d\n", rc);
        failures++;
        return;
    }
    check_s8("avgpool_rescale", out, EXPECT(ap), AP_OUT_SIZE);
}

static void test_group_conv(void)
{
    int8_t out[GC_OUT_SIZE];
    const int32_t d[] = {GC_DIMS};
    const int32_t off[] = {GC_OFFSETS};
    int rc = esc2c_group_conv_s8(gc_in, d[0], d[1], d[2], gc_w, gc_bias, out, d[3], d[4], d[5], d[6], d[7], d[8], d[9],
                                 d[10], d[11], d[12], off[0], gc_mult, gc_shift, off[1], -128, 127);
    if (rc != 0)
    {
        printf("FAIL group_conv returned %d\n", rc);
        failures++;
        return;
    }
    check_s8("group_conv", out, EXPECT(gc), GC_OUT_SIZE);
}

int main(void)
{
    test_requantize();
    test_add();
    test_requantize_s8();
    test_avgpool();
    test_group_conv();
    return failures ? 1 : 0;
}
