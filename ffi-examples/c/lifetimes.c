/*
 * The lifetime of every string the precond C API returns, exercised exactly as far as the
 * documented contract allows (reading a pointer past its lifetime is never done):
 *
 *   precond_version(), precond_status_name()  static: valid while the library is loaded;
 *   precond_last_error()                      until the next failing call on the calling thread
 *                                             (precond_clear_last_error() frees nothing);
 *   precond_optimizer_last_error(opt)         until the next failing call on `opt` or its
 *                                             release.
 *
 * Each kept pointer is compared with a copy taken when it was returned, after the calls the
 * contract says leave it valid. Run under valgrind and under AddressSanitizer by
 * crates/precond-ffi/tests/examples.rs: a message freed too early is an invalid read there.
 *
 * Prints "ok <case>" per passed check and "FAIL <case>" otherwise; the last line is
 * "checks <passed>/<total>"; the exit status is 0 only if every check passed.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "precond.h"

static int total = 0, passed = 0;

static void truth(const char *name, int cond) {
    total++;
    if (cond) {
        passed++;
        printf("ok %s\n", name);
    } else {
        printf("FAIL %s\n", name);
    }
}

/* `kept` still holds the text `copy` it had when it was returned */
static void still(const char *name, const char *kept, const char *copy) {
    total++;
    if (strcmp(kept, copy) == 0) {
        passed++;
        printf("ok %s: \"%s\"\n", name, kept);
    } else {
        printf("FAIL %s: \"%s\", was \"%s\"\n", name, kept, copy);
    }
}

static void copy_to(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* a failing call on another thread: its own thread-local message, nothing of ours */
static void *fail_on_other_thread(void *arg) {
    precond_cond2_t c2;
    precond_status_t st = precond_cond2(NULL, 2, 2, PRECOND_ROW_MAJOR, &c2);
    *(int *)arg = st == PRECOND_NULL_POINTER && strstr(precond_last_error(), "`a` is NULL") != NULL;
    return NULL;
}

int main(void) {
    char copy[512], hcopy[512], vcopy[64], ncopy[64];
    double spd[4] = {4.0, 1.0, 1.0, 3.0};
    precond_cond2_t c2;

    /* ---- static strings: kept from the start, read at the very end ---- */
    const char *version = precond_version();
    const char *name = precond_status_name(PRECOND_NON_FINITE);
    copy_to(vcopy, sizeof vcopy, version);
    copy_to(ncopy, sizeof ncopy, name);

    /* ---- the thread-local message across precond_clear_last_error ---- */
    truth("no failure yet: empty", strcmp(precond_last_error(), "") == 0);
    truth("first failure", precond_cond2(spd, 2, 2, 7, &c2) == PRECOND_INVALID_ARGUMENT);
    const char *kept = precond_last_error();
    copy_to(copy, sizeof copy, kept);
    truth("message names the argument", strstr(kept, "`layout` is 7") != NULL);

    precond_clear_last_error();
    truth("cleared: precond_last_error() is empty", strcmp(precond_last_error(), "") == 0);
    still("kept message after clearing", kept, copy);

    /* successful calls of every kind, and clearing again */
    truth("cond2 ok", precond_cond2(spd, 2, 2, PRECOND_ROW_MAJOR, &c2) == PRECOND_OK);
    precond_optimizer_t *opt = NULL;
    truth("new_json ok",
          precond_optimizer_new_json("{\"optimizer\": \"adam\", \"lr\": 0.1}", 2, &opt) ==
              PRECOND_OK);
    double x[2] = {1.0, -1.0}, g[2] = {0.5, -0.25};
    truth("step ok", precond_optimizer_step_f64(opt, x, g, 2) == PRECOND_OK);
    (void)precond_status_name(PRECOND_OK);
    (void)precond_version();
    precond_clear_last_error();
    truth("still empty after successes", strcmp(precond_last_error(), "") == 0);
    still("kept message after successful calls and a second clearing", kept, copy);

    /* a failure on another thread leaves this thread's message alone */
    int other_ok = 0;
    pthread_t th;
    truth("thread created", pthread_create(&th, NULL, fail_on_other_thread, &other_ok) == 0);
    truth("thread joined", pthread_join(th, NULL) == 0);
    truth("the other thread saw its own message", other_ok);
    still("kept message after a failure on another thread", kept, copy);
    truth("this thread's message still cleared", strcmp(precond_last_error(), "") == 0);

    /* the next failing call on this thread ends `kept`'s lifetime: it is not read after this */
    truth("second failure", precond_cond2(NULL, 2, 2, PRECOND_ROW_MAJOR, &c2) ==
                                PRECOND_NULL_POINTER);
    const char *second = precond_last_error();
    truth("the second message replaces the first",
          strstr(second, "`a` is NULL") != NULL && strstr(second, "layout") == NULL);

    /* ---- the per-handle message ---- */
    truth("handle: no failure yet", strcmp(precond_optimizer_last_error(opt), "") == 0);
    double bad[2] = {NAN, 1.0};
    truth("handle failure", precond_optimizer_step_f64(opt, x, bad, 2) == PRECOND_NON_FINITE);
    const char *hkept = precond_optimizer_last_error(opt);
    copy_to(hcopy, sizeof hcopy, hkept);
    truth("handle message names the index", strstr(hkept, "index 0") != NULL);

    precond_clear_last_error();
    still("handle message after precond_clear_last_error", hkept, hcopy);
    truth("handle message unchanged by clearing",
          strcmp(precond_optimizer_last_error(opt), hcopy) == 0);
    double lr = 0.0;
    truth("get_lr ok", precond_optimizer_get_lr(opt, &lr) == PRECOND_OK && lr == 0.1);
    truth("step ok again", precond_optimizer_step_f64(opt, x, g, 2) == PRECOND_OK);
    still("handle message after successful calls on the handle", hkept, hcopy);
    /* failures that do not take this handle: a handle-less call, another handle */
    truth("handle-less failure", precond_cond2(spd, 0, 2, PRECOND_ROW_MAJOR, &c2) ==
                                     PRECOND_INVALID_ARGUMENT);
    precond_optimizer_t *other = NULL;
    truth("other handle",
          precond_optimizer_new_json("{\"optimizer\": \"sgd\", \"lr\": 0.1}", 2, &other) ==
              PRECOND_OK);
    truth("other handle failure", precond_optimizer_set_lr(other, -1.0) ==
                                      PRECOND_INVALID_ARGUMENT);
    still("handle message after failures elsewhere", hkept, hcopy);
    precond_optimizer_free(other);
    still("handle message after another handle's release", hkept, hcopy);

    /* the next failing call on the handle ends `hkept`'s lifetime */
    truth("handle second failure", precond_optimizer_set_lr(opt, NAN) == PRECOND_INVALID_ARGUMENT);
    const char *hsecond = precond_optimizer_last_error(opt);
    truth("the handle's second message replaces the first",
          strstr(hsecond, "lr") != NULL && strstr(hsecond, "index 0") == NULL);
    precond_optimizer_free(opt);

    /* a NULL handle: a static message */
    const char *null_msg = precond_optimizer_last_error(NULL);
    truth("NULL handle message", strstr(null_msg, "NULL") != NULL);

    /* ---- the static strings, after all of the above ---- */
    still("version", version, vcopy);
    still("status name", name, ncopy);
    truth("status name text", strcmp(name, "PRECOND_NON_FINITE") == 0);
    truth("version matches the header", strcmp(version, PRECOND_VERSION) == 0);
    truth("NULL handle message still readable", strstr(null_msg, "NULL") != NULL);

    printf("checks %d/%d\n", passed, total);
    return passed == total ? 0 : 1;
}
