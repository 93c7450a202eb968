/* Reference SM2 verifier on OpenSSL's libcrypto, for the differential tests.
 *
 * Reads lines "<public key hex> <message hex> <signature hex>" on stdin, where the public key
 * is a SEC1 point (04 || x || y) and the signature is r || s (32 bytes each, big-endian), and
 * prints one character per line: '1' valid, '0' invalid (including unusable keys). The SM2 ID
 * is the default 1234567812345678. Built and run by tests/tests/it/sm2_differential.rs.
 */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ID[] = "1234567812345678";

static long unhex(const char *hex, unsigned char *out, long cap) {
    long len = (long)strlen(hex);
    if (len % 2 != 0 || len / 2 > cap) return -1;
    for (long i = 0; i < len / 2; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return -1;
        out[i] = (unsigned char)byte;
    }
    return len / 2;
}

static EVP_PKEY *public_key(const unsigned char *point, long len) {
    OSSL_PARAM_BLD *build = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(build, OSSL_PKEY_PARAM_GROUP_NAME, "SM2", 0);
    OSSL_PARAM_BLD_push_octet_string(build, OSSL_PKEY_PARAM_PUB_KEY, point, (size_t)len);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(build);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
    EVP_PKEY *key = NULL;
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(build);
    return key;
}

static int verify(EVP_PKEY *key, const unsigned char *message, long message_len, const unsigned char *rs) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(rs, 32, NULL), BN_bin2bn(rs + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    if (der_len <= 0) return 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int ok = 0;
    if (pctx != NULL && EVP_PKEY_CTX_set1_id(pctx, ID, (int)strlen(ID)) > 0) {
        EVP_MD_CTX_set_pkey_ctx(md, pctx);
        if (EVP_DigestVerifyInit(md, NULL, EVP_sm3(), NULL, key) > 0) {
            ok = EVP_DigestVerify(md, der, (size_t)der_len, message, (size_t)message_len) == 1;
        }
    }
    EVP_MD_CTX_free(md);
    EVP_PKEY_CTX_free(pctx);
    OPENSSL_free(der);
    return ok;
}

int main(void) {
    static char key_hex[512], message_hex[4096], signature_hex[512];
    static unsigned char point[256], message[2048], signature[64];
    while (scanf("%511s %4095s %511s", key_hex, message_hex, signature_hex) == 3) {
        long point_len = unhex(key_hex, point, sizeof point);
        long message_len = strcmp(message_hex, "-") == 0 ? 0 : unhex(message_hex, message, sizeof message);
        long signature_len = unhex(signature_hex, signature, sizeof signature);
        int ok = 0;
        if (point_len > 0 && message_len >= 0 && signature_len == 64) {
            EVP_PKEY *key = public_key(point, point_len);
            if (key != NULL) {
                ok = verify(key, message, message_len, signature);
                EVP_PKEY_free(key);
            }
        }
        putchar(ok ? '1' : '0');
    }
    putchar('\n');
    return 0;
}
