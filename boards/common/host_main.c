/*
 * Host reference runner: the same model code built with the host compiler. Used by `esc2c run` to
 * get the bits the Cortex-M7 build must reproduce.
 *   host_runner info            print "@model INPUT OUTPUT LAYERS ARENA VECTORS" and "@layer_info l MACS NAME"
 *   host_runner dump            print the compiled-in test vectors: "@in i HEX" and "@expect i HEX"
 *   host_runner run [--layers]  read inputs (ESC2C_INPUT_SIZE bytes each) from stdin, print
 *                               "@out i STATUS HEX" and, with --layers, "@layer i l HEX" per layer
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "test_vectors.h"

static int current_input;

static void print_hex(const int8_t *p, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        printf("%02x", (unsigned)(uint8_t)p[i]);
    }
    printf("\n");
}

static void layer_hook(int layer, const char *name, const int8_t *out, int32_t out_size, void *user)
{
    (void)name;
    (void)user;
    printf("@layer %d %d ", current_input, layer);
    print_hex(out, out_size);
}

int main(int argc, char **argv)
{
    static int8_t input[ESC2C_INPUT_SIZE];
    static int8_t output[ESC2C_OUTPUT_SIZE];
    if (argc >= 2 && strcmp(argv[1], "info") == 0) {
        printf("@model %d %d %d %d %d\n", ESC2C_INPUT_SIZE, ESC2C_OUTPUT_SIZE, ESC2C_NUM_LAYERS, ESC2C_ARENA_SIZE,
               ESC2C_NUM_TEST_VECTORS);
        for (int l = 0; l < ESC2C_NUM_LAYERS; l++) {
            printf("@layer_info %d %ld %s\n", l, (long)esc2c_layer_macs[l], esc2c_layer_names[l]);
        }
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "dump") == 0) {
        for (int v = 0; v < ESC2C_NUM_TEST_VECTORS; v++) {
            printf("@in %d ", v);
            print_hex(esc2c_test_inputs[v], ESC2C_INPUT_SIZE);
            printf("@expect %d ", v);
            print_hex(esc2c_test_outputs[v], ESC2C_OUTPUT_SIZE);
        }
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        int layers = argc >= 3 && strcmp(argv[2], "--layers") == 0;
        esc2c_set_layer_hook(layers ? layer_hook : 0, 0);
        for (current_input = 0; fread(input, 1, sizeof(input), stdin) == sizeof(input); current_input++) {
            int status = esc2c_model_run(input, output);
            printf("@out %d %d ", current_input, status);
            print_hex(output, ESC2C_OUTPUT_SIZE);
        }
        return 0;
    }
    fprintf(stderr, "usage: host_runner info | dump | run [--layers] < inputs\n");
    return 2;
}
