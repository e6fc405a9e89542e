/* RUN: segments, chains, early exit and the monolithic model, with per-segment
 * timing in port ticks (see docs/protocol.md for the RESULT layout). */
#include <string.h>

#include "port.h"
#include "te_device.h"

/* Ticks spent in one segment's layers; layers report through te_layer_done. */
static uint64_t run_segment(const te_segment_t *s, int8_t *arena)
{
    const uint64_t t0 = port_ticks_restart();
    s->run(arena);
    const uint64_t t1 = port_ticks();
    port_watchdog_feed();
    return t1 - t0;
}

typedef struct {
    uint64_t ticks[TX_MAX_SEGMENTS];
    uint64_t decision;
    int exit, executed;
    const int8_t *logits;
    int n_logits;
} outcome_t;

static void once_chain(te_device_t *d, const te_run_request_t *req, const te_policy_t *policy, const uint8_t *x,
                       outcome_t *o)
{
    const te_model_t *m = d->m->segments;
    const int last = req->mode == TX_MODE_CHAIN ? req->segment : m->num_segments - 1;
    uint8_t top1[TX_MAX_SEGMENTS];
    memcpy(d->m->arena + m->segments[0].in_offset, x, m->segments[0].in_bytes);
    for (int k = 0; k <= last; ++k) {
        const te_segment_t *s = &m->segments[k];
        o->ticks[k] += run_segment(s, d->m->arena);
        o->exit = k;
        o->executed = k + 1;
        o->logits = d->m->arena + s->logits_offset;
        o->n_logits = s->num_classes;
        if (!policy || k == last) continue;
        const uint64_t t1 = port_ticks_restart();
        top1[k] = (uint8_t)te_argmax(o->logits, s->num_classes);
        const int leave = te_policy_passes(policy, k, o->logits, s->num_classes, s->logits_scale, s->logits_zp, top1);
        o->decision += port_ticks() - t1;
        if (leave) return;
    }
}

static void once_single(te_device_t *d, const te_model_t *m, int k, const uint8_t *x, outcome_t *o)
{
    const te_segment_t *s = &m->segments[k];
    memcpy(d->m->arena + s->in_offset, x, s->in_bytes);
    o->ticks[k] += run_segment(s, d->m->arena);
    o->logits = d->m->arena + s->logits_offset;
    o->n_logits = s->num_classes;
    o->executed = 1;
}

static te_status_t check(const te_device_t *d, const te_run_request_t *req, te_policy_t *policy,
                         const uint8_t **x)
{
    const te_model_t *m = d->m->segments;
    if (req->mode == TX_MODE_CHAIN || req->mode == TX_MODE_SEGMENT) TE_CHECK(req->segment < m->num_segments, TE_REQ_BAD_SEGMENT);
    const te_model_t *single = m;
    if (req->mode == TX_MODE_FULL) {
        TE_CHECK(req->segment == TX_FULL_DEPTH || req->segment == TX_FULL_ALL_EXITS, TE_REQ_BAD_SEGMENT);
        single = req->segment == TX_FULL_DEPTH ? d->m->full : d->m->all_exits;
        TE_CHECK(single != 0, TE_REQ_UNSUPPORTED);
    }
    if (req->mode == TX_MODE_EARLY_EXIT) {
        policy->id = req->policy_id;
        policy->n_params = req->n_params;
        memcpy(policy->params, req->params, sizeof policy->params);
        const te_status_t st = te_policy_check(policy);
        if (st != TE_OK) return st;
    }
    const int k = req->mode == TX_MODE_SEGMENT ? req->segment : 0;
    const uint32_t size = single->segments[k].in_bytes;
    const uint32_t start = (uint32_t)req->slot * size;
    TE_CHECK(size <= d->m->input_capacity && req->slot <= (d->m->input_capacity - size) / size, TE_REQ_BAD_SLOT);
    TE_CHECK(start + size <= d->valid, TE_REQ_INPUT_MISSING);
    *x = d->m->input + start;
    return TE_OK;
}

#ifdef TE_TEST_FAULTS
/* Test builds only (EXTRA_CFLAGS=-DTE_TEST_FAULTS): a RUN with repeat 65535
 * and slot 0xFFFE hangs, slot 0xFFFD faults, so the tests can watch the
 * watchdog and the fault handler end QEMU with their exit statuses. */
static void inject_fault(const te_run_request_t *req)
{
    if (req->repeat != 65535u) return;
    if (req->slot == 0xFFFEu)
        for (volatile int spin = 1; spin;) {}
    if (req->slot == 0xFFFDu) (void)*(volatile uint32_t *)0xFFFFFFF0u;
}
#endif

te_status_t te_run(te_device_t *d, const te_run_request_t *req, uint8_t *out, size_t capacity, size_t *len)
{
#ifdef TE_TEST_FAULTS
    inject_fault(req);
#endif
    te_policy_t policy;
    const uint8_t *x = 0;
    te_status_t st = check(d, req, &policy, &x);
    if (st != TE_OK) return st;
    outcome_t o;
    memset(&o, 0, sizeof o);
    const int window = d->has_gpio;
    if (window) port_gpio_marker(1);
    for (uint32_t r = 0; r < req->repeat; ++r) {
        if (req->mode == TX_MODE_FULL)
            once_single(d, req->segment == TX_FULL_DEPTH ? d->m->full : d->m->all_exits, 0, x, &o);
        else if (req->mode == TX_MODE_SEGMENT)
            once_single(d, d->m->segments, req->segment, x, &o);
        else
            once_chain(d, req, req->mode == TX_MODE_EARLY_EXIT ? &policy : 0, x, &o);
    }
    if (window) port_gpio_marker(0);
    if (req->mode == TX_MODE_FULL) o.exit = d->m->segments->num_segments - 1;
    if (req->mode == TX_MODE_SEGMENT) o.exit = req->segment;
    const int first = req->mode == TX_MODE_SEGMENT ? req->segment : 0;
    const size_t need = TX_RESULT_FIXED_SIZE + 8u * (size_t)o.executed + (size_t)o.n_logits;
    TE_CHECK(need <= capacity && o.n_logits <= (int)TX_MAX_LOGITS, TE_DEV_INTERNAL);
    out[0] = req->mode;
    out[1] = (uint8_t)o.exit;
    out[2] = (uint8_t)o.executed;
    out[3] = window ? TX_RESULT_FLAG_WINDOW : 0;
    te_put16(out + 4, req->repeat);
    te_put16(out + 6, (uint16_t)o.n_logits);
    te_put32(out + 8, port_tick_hz());
    te_put32(out + 12, window ? ++d->window : 0);
    te_put64(out + 16, o.decision);
    for (int i = 0; i < o.executed; ++i) te_put64(out + TX_RESULT_FIXED_SIZE + 8 * i, o.ticks[first + i]);
    memcpy(out + TX_RESULT_FIXED_SIZE + 8 * o.executed, o.logits, (size_t)o.n_logits);
    *len = need;
    return TE_OK;
}
