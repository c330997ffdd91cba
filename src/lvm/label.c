/*
 * The binary parts of LVM2's on-disk format: the CRC, the label and
 * pv_header, the metadata area header. Layouts from lvm2's
 * lib/label/label.h and lib/format_text/layout.h (doc/lvhd.md §5).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lvm/lvm.h"

void lvm_seterr(lvm_err *e, const char *code, const char *fmt, ...)
{
	if (e == NULL)
		return;
	snprintf(e->code, sizeof e->code, "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* lvm2's calc_crc: reflected CRC-32 (0xEDB88320), given seed, no final xor. */
uint32_t lvm_crc(uint32_t seed, const uint8_t *buf, size_t len)
{
	static uint32_t table[256];
	static int ready;
	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = 1;
	}
	uint32_t crc = seed;
	for (size_t i = 0; i < len; i++)
		crc = table[(crc ^ buf[i]) & 0xFF] ^ (crc >> 8);
	return crc;
}

/* A zero-terminated list of disk_locn {u64 offset, u64 size} at p; returns bytes used or 0. */
static size_t read_areas(const uint8_t *p, const uint8_t *end, lvm_area *a, size_t *n)
{
	const uint8_t *q = p;
	*n = 0;
	while (q + 16 <= end) {
		uint64_t off = le64(q), size = le64(q + 8);
		q += 16;
		if (off == 0)
			return (size_t)(q - p);
		if (*n == LVM_MAX_AREAS)
			return 0;
		a[*n].offset = off;
		a[*n].size = size;
		(*n)++;
	}
	return 0;
}

static int parse_label_at(const uint8_t *s, uint32_t sector, lvm_label *l, lvm_err *e)
{
	if (le64(s + 8) != sector) {
		lvm_seterr(e, "EFORMAT", "LVM label in sector %u says it belongs in sector %llu", sector,
			   (unsigned long long)le64(s + 8));
		return -1;
	}
	uint32_t stored = le32(s + 16), crc = lvm_crc(LVM_INITIAL_CRC, s + 20, LVM_SECTOR - 20);
	if (stored != crc) {
		lvm_seterr(e, "ECHECKSUM", "LVM label in sector %u has a bad checksum (stored 0x%08x, computed 0x%08x)",
			   sector, stored, crc);
		return -1;
	}
	if (memcmp(s + 24, "LVM2 001", 8) != 0) {
		lvm_seterr(e, "EFORMAT", "LVM label in sector %u is of type '%.8s', not 'LVM2 001'", sector, s + 24);
		return -1;
	}
	uint32_t contents = le32(s + 20);
	if (contents < 32 || contents > LVM_SECTOR - 40) {
		lvm_seterr(e, "EFORMAT", "LVM label in sector %u: pv_header offset %u is outside the sector", sector, contents);
		return -1;
	}
	const uint8_t *p = s + contents, *end = s + LVM_SECTOR;
	memset(l, 0, sizeof *l);
	l->sector = sector;
	memcpy(l->pv_id, p, 32);
	for (int i = 0; i < 32; i++)
		if (l->pv_id[i] < 0x21 || l->pv_id[i] > 0x7e) {
			lvm_seterr(e, "EFORMAT", "LVM pv_header in sector %u: PV uuid is not printable", sector);
			return -1;
		}
	l->dev_size = le64(p + 32);
	p += 40;
	size_t used = read_areas(p, end, l->data, &l->ndata);
	if (used == 0 || (p += used, used = read_areas(p, end, l->meta, &l->nmeta)) == 0) {
		lvm_seterr(e, "EFORMAT", "LVM pv_header in sector %u: area lists are not terminated inside the sector",
			   sector);
		return -1;
	}
	return 0;
}

int lvm_label_find(const uint8_t *buf, size_t len, lvm_label *l, lvm_err *e)
{
	lvm_err first = { "", "" };
	for (uint32_t s = 0; s < LVM_LABEL_SCAN && (s + 1) * (size_t)LVM_SECTOR <= len; s++) {
		const uint8_t *p = buf + (size_t)s * LVM_SECTOR;
		if (memcmp(p, "LABELONE", 8) != 0)
			continue;
		lvm_err here;
		if (parse_label_at(p, s, l, &here) == 0)
			return 0;
		if (!first.code[0])
			first = here;
	}
	if (first.code[0]) {
		if (e)
			*e = first;
		return -1;
	}
	lvm_seterr(e, "ENOLABEL", "no LVM label (LABELONE) in sectors 0-%u: not an LVM physical volume",
		   LVM_LABEL_SCAN - 1);
	return -1;
}

#define FMTT_MAGIC "\040\114\126\115\062\040\170\133\065\101\045\162\060\116\052\076"

int lvm_mda_parse(const uint8_t b[512], uint64_t at, lvm_mda *m, lvm_err *e)
{
	memset(m, 0, sizeof *m);
	if (memcmp(b + 4, FMTT_MAGIC, 16) != 0) {
		lvm_seterr(e, "EFORMAT", "metadata area header at byte %llu: wrong magic", (unsigned long long)at);
		return -1;
	}
	m->checksum = le32(b);
	m->checksum_computed = lvm_crc(LVM_INITIAL_CRC, b + 4, 508);
	if (m->checksum != m->checksum_computed) {
		lvm_seterr(e, "ECHECKSUM", "metadata area header at byte %llu: bad checksum (stored 0x%08x, computed 0x%08x)",
			   (unsigned long long)at, m->checksum, m->checksum_computed);
		return -1;
	}
	m->version = le32(b + 20);
	m->start = le64(b + 24);
	m->size = le64(b + 32);
	if (m->version != 1) {
		lvm_seterr(e, "EFORMAT", "metadata area header at byte %llu: version %u (only 1 is known)",
			   (unsigned long long)at, m->version);
		return -1;
	}
	if (m->start != at) {
		lvm_seterr(e, "EFORMAT", "metadata area header at byte %llu says it starts at byte %llu",
			   (unsigned long long)at, (unsigned long long)m->start);
		return -1;
	}
	if (m->size < 2 * LVM_SECTOR) {
		lvm_seterr(e, "EFORMAT", "metadata area at byte %llu: size %llu is too small", (unsigned long long)at,
			   (unsigned long long)m->size);
		return -1;
	}
	for (const uint8_t *p = b + 40; p + 24 <= b + 512 && m->nrlocn < 4; p += 24) {
		lvm_rlocn r = { le64(p), le64(p + 8), le32(p + 16), le32(p + 20) };
		if (r.offset == 0)
			break;
		m->rlocn[m->nrlocn++] = r;
	}
	return 0;
}
