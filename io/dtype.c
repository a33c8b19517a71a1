/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dtype table: sizes and names, shared by the API, the index decoder
 * and the HDF5 layer (h5util.c maps each dtype to an HDF5 type).
 */
#include <string.h>

#include "ckpt/ckpt.h"

static const struct {
    ckpt_dtype dtype;
    size_t size;
    const char *name;
} table[] = {
    {CKPT_F64, 8, "f64"},          {CKPT_F32, 4, "f32"},          {CKPT_F16, 2, "f16"},
    {CKPT_BF16, 2, "bf16"},        {CKPT_FP8_E4M3, 1, "fp8_e4m3"}, {CKPT_FP8_E5M2, 1, "fp8_e5m2"},
    {CKPT_I64, 8, "i64"},          {CKPT_I32, 4, "i32"},          {CKPT_I16, 2, "i16"},
    {CKPT_I8, 1, "i8"},            {CKPT_U8, 1, "u8"},            {CKPT_BOOL, 1, "bool"},
    {CKPT_BYTES, 1, "bytes"},
};

size_t ckpt_dtype_size(ckpt_dtype dtype)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].dtype == dtype)
            return table[i].size;
    return 0;
}

const char *ckpt_dtype_name(ckpt_dtype dtype)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].dtype == dtype)
            return table[i].name;
    return NULL;
}
