/*
 * VHD on-disk structures: footer, dynamic header, locators, batmap header,
 * checksums, geometry. Pure functions over byte buffers (what the fuzzers hit).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vhd/vhd.h"

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put64(uint8_t *p, uint64_t v) { vhd_put32(p, (uint32_t)(v >> 32)); vhd_put32(p + 4, (uint32_t)v); }

void vhd_seterr(vhd_err *e, const char *code, const char *fmt, ...)
{
	if (e == NULL)
		return;
	snprintf(e->code, sizeof e->code, "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

/* One's complement of the byte sum, the checksum field counted as zero. */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;
	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

const char *vhd_type_name(uint32_t t)
{
	switch (t) {
	case VHD_FIXED: return "fixed";
	case VHD_DYNAMIC: return "dynamic";
	case VHD_DIFF: return "differencing";
	default: return "unknown";
	}
}

int vhd_footer_parse(const uint8_t b[512], vhd_footer *f)
{
	memset(f, 0, sizeof *f);
	memcpy(f->cookie, b, 8);
	f->features = be32(b + 8);
	f->version = be32(b + 12);
	f->data_offset = be64(b + 16);
	f->timestamp = be32(b + 24);
	memcpy(f->creator_app, b + 28, 4);
	f->creator_version = be32(b + 32);
	f->creator_os = be32(b + 36);
	f->original_size = be64(b + 40);
	f->current_size = be64(b + 48);
	f->cylinders = be16(b + 56);
	f->heads = b[58];
	f->sectors = b[59];
	f->disk_type = be32(b + 60);
	f->checksum = be32(b + 64);
	memcpy(f->uuid, b + 68, 16);
	f->saved_state = b[84];
	f->hidden = b[85];
	f->checksum_computed = vhd_checksum(b, 512, 64);
	return memcmp(b, "conectix", 8) == 0 ? 0 : -1;
}

int vhd_footer_valid(const vhd_footer *f)
{
	return memcmp(f->cookie, "conectix", 8) == 0 && f->checksum == f->checksum_computed &&
	       (f->disk_type == VHD_FIXED || f->disk_type == VHD_DYNAMIC || f->disk_type == VHD_DIFF) &&
	       f->current_size <= VHD_MAX_SIZE;
}

void vhd_footer_build(const vhd_footer *f, uint8_t b[512])
{
	memset(b, 0, 512);
	memcpy(b, "conectix", 8);
	vhd_put32(b + 8, f->features);
	vhd_put32(b + 12, f->version);
	put64(b + 16, f->data_offset);
	vhd_put32(b + 24, f->timestamp);
	memcpy(b + 28, f->creator_app, 4);
	vhd_put32(b + 32, f->creator_version);
	vhd_put32(b + 36, f->creator_os);
	put64(b + 40, f->original_size);
	put64(b + 48, f->current_size);
	put16(b + 56, f->cylinders);
	b[58] = f->heads;
	b[59] = f->sectors;
	vhd_put32(b + 60, f->disk_type);
	memcpy(b + 68, f->uuid, 16);
	b[84] = f->saved_state;
	b[85] = f->hidden;
	vhd_put32(b + 64, vhd_checksum(b, 512, 64));
}

/* UTF-16 (either byte order) to UTF-8, stopping at NUL; invalid surrogates become '?'. */
static size_t utf16_to_utf8(const uint8_t *in, size_t len, int big, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i + 1 < len; i += 2) {
		uint32_t c = big ? be16(in + i) : (uint32_t)(in[i] | in[i + 1] << 8);
		if (c == 0)
			break;
		if (c >= 0xD800 && c < 0xDC00 && i + 3 < len) {
			uint32_t d = big ? be16(in + i + 2) : (uint32_t)(in[i + 2] | in[i + 3] << 8);
			if (d >= 0xDC00 && d < 0xE000) {
				c = 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00);
				i += 2;
			} else {
				c = '?';
			}
		} else if (c >= 0xD800 && c < 0xE000) {
			c = '?';
		}
		uint8_t tmp[4];
		size_t n;
		if (c < 0x80) { tmp[0] = (uint8_t)c; n = 1; }
		else if (c < 0x800) { tmp[0] = (uint8_t)(0xC0 | c >> 6); tmp[1] = (uint8_t)(0x80 | (c & 0x3F)); n = 2; }
		else if (c < 0x10000) {
			tmp[0] = (uint8_t)(0xE0 | c >> 12); tmp[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
			tmp[2] = (uint8_t)(0x80 | (c & 0x3F)); n = 3;
		} else {
			tmp[0] = (uint8_t)(0xF0 | c >> 18); tmp[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
			tmp[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)); tmp[3] = (uint8_t)(0x80 | (c & 0x3F)); n = 4;
		}
		if (o + n + 1 > outlen)
			break;
		memcpy(out + o, tmp, n);
		o += n;
	}
	if (outlen)
		out[o < outlen ? o : outlen - 1] = 0;
	return o;
}

int vhd_header_parse(const uint8_t b[1024], vhd_header *h)
{
	memset(h, 0, sizeof *h);
	memcpy(h->cookie, b, 8);
	h->data_offset = be64(b + 8);
	h->table_offset = be64(b + 16);
	h->version = be32(b + 24);
	h->max_bat_entries = be32(b + 28);
	h->block_size = be32(b + 32);
	h->checksum = be32(b + 36);
	memcpy(h->parent_uuid, b + 40, 16);
	h->parent_timestamp = be32(b + 56);
	utf16_to_utf8(b + 64, 512, 1, h->parent_name, sizeof h->parent_name);
	for (int i = 0; i < 8; i++) {
		const uint8_t *l = b + 576 + 24 * i;
		memcpy(h->loc[i].code, l, 4);
		for (int k = 0; k < 4; k++)
			if (h->loc[i].code[k] == 0)
				h->loc[i].code[k] = ' ';
		if (be32(l) == 0)
			h->loc[i].code[0] = 0;
		h->loc[i].data_space = be32(l + 4);
		h->loc[i].data_length = be32(l + 8);
		h->loc[i].data_offset = be64(l + 16);
	}
	h->checksum_computed = vhd_checksum(b, 1024, 36);
	return memcmp(b, "cxsparse", 8) == 0 ? 0 : -1;
}

static size_t utf8_to_utf16(const char *s, uint8_t *out, size_t outlen, int big)
{
	size_t o = 0;
	const uint8_t *p = (const uint8_t *)s;
	while (*p && o + 2 <= outlen) {
		uint32_t c = *p++;
		if (c >= 0xF0 && p[0] && p[1] && p[2]) {
			c = (c & 7) << 18 | (p[0] & 0x3Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu); p += 3;
		} else if (c >= 0xE0 && p[0] && p[1]) {
			c = (c & 15) << 12 | (p[0] & 0x3Fu) << 6 | (p[1] & 0x3Fu); p += 2;
		} else if (c >= 0xC0 && p[0]) {
			c = (c & 31) << 6 | (p[0] & 0x3Fu); p += 1;
		}
		uint16_t u[2];
		int n = 1;
		if (c >= 0x10000) {
			c -= 0x10000;
			u[0] = (uint16_t)(0xD800 + (c >> 10));
			u[1] = (uint16_t)(0xDC00 + (c & 0x3FF));
			n = 2;
		} else {
			u[0] = (uint16_t)c;
		}
		if (o + 2u * (size_t)n > outlen)
			break;
		for (int k = 0; k < n; k++, o += 2) {
			if (big) { out[o] = (uint8_t)(u[k] >> 8); out[o + 1] = (uint8_t)u[k]; }
			else { out[o] = (uint8_t)u[k]; out[o + 1] = (uint8_t)(u[k] >> 8); }
		}
	}
	return o;
}

size_t vhd_utf16_encode(const char *s, uint8_t *out, size_t outlen, int big)
{
	return utf8_to_utf16(s, out, outlen, big);
}

void vhd_header_build(const vhd_header *h, uint8_t b[1024])
{
	memset(b, 0, 1024);
	memcpy(b, "cxsparse", 8);
	put64(b + 8, h->data_offset);
	put64(b + 16, h->table_offset);
	vhd_put32(b + 24, h->version);
	vhd_put32(b + 28, h->max_bat_entries);
	vhd_put32(b + 32, h->block_size);
	memcpy(b + 40, h->parent_uuid, 16);
	vhd_put32(b + 56, h->parent_timestamp);
	utf8_to_utf16(h->parent_name, b + 64, 512, 1);
	for (int i = 0; i < 8; i++) {
		uint8_t *l = b + 576 + 24 * i;
		if (h->loc[i].code[0] == 0)
			continue;
		memcpy(l, h->loc[i].code, 4);
		vhd_put32(l + 4, h->loc[i].data_space);
		vhd_put32(l + 8, h->loc[i].data_length);
		put64(l + 16, h->loc[i].data_offset);
	}
	vhd_put32(b + 36, vhd_checksum(b, 1024, 36));
}

int vhd_locator_decode(const char *code, const uint8_t *data, size_t len, char *out, size_t outlen)
{
	if (outlen == 0)
		return -1;
	out[0] = 0;
	if (strncmp(code, "MacX", 4) == 0) {
		size_t n = 0;
		while (n < len && data[n])
			n++;
		const char *s = (const char *)data;
		if (n >= 7 && strncmp(s, "file://", 7) == 0) {
			s += 7;
			n -= 7;
		}
		if (n + 1 > outlen)
			n = outlen - 1;
		memcpy(out, s, n);
		out[n] = 0;
	} else if (strncmp(code, "W2ku", 4) == 0 || strncmp(code, "W2ru", 4) == 0) {
		utf16_to_utf8(data, len, 0, out, outlen);
		for (char *p = out; *p; p++)
			if (*p == '\\')
				*p = '/';
	} else {
		return -1;
	}
	return out[0] ? 0 : -1;
}

int vhd_batmap_header_parse(const uint8_t b[512], vhd_batmap *bm)
{
	if (memcmp(b, "tdbatmap", 8) != 0) {
		bm->present = 0;
		return -1;
	}
	bm->present = 1;
	bm->offset = be64(b + 8);
	bm->size_sectors = be32(b + 16);
	bm->version = be32(b + 20);
	bm->checksum = be32(b + 24);
	return 0;
}

void vhd_batmap_header_build(const vhd_batmap *bm, uint8_t b[512])
{
	memset(b, 0, 512);
	memcpy(b, "tdbatmap", 8);
	put64(b + 8, bm->offset);
	vhd_put32(b + 16, bm->size_sectors);
	vhd_put32(b + 20, bm->version);
	vhd_put32(b + 24, bm->checksum);
}

int vhd_block_full(const uint8_t *bitmap, uint64_t block, uint32_t spb, uint64_t total_sectors)
{
	uint64_t first = block * spb;
	uint64_t n = first >= total_sectors ? 0 : total_sectors - first;
	if (n > spb)
		n = spb;
	uint64_t i = 0;
	for (; i + 8 <= n; i += 8)
		if (bitmap[i / 8] != 0xFF)
			return 0;
	for (; i < n; i++)
		if (!vhd_bit(bitmap, i))
			return 0;
	return 1;
}

/* CHS from the VHD specification's algorithm. */
void vhd_geometry(uint64_t size, uint16_t *cyl, uint8_t *heads, uint8_t *spt)
{
	uint64_t total = size / 512, c, h, s, cth;
	if (total > 65535ull * 16 * 255)
		total = 65535ull * 16 * 255;
	if (total >= 65535ull * 16 * 63) {
		s = 255; h = 16; cth = total / s;
	} else {
		s = 17; cth = total / s;
		h = (cth + 1023) / 1024;
		if (h < 4) h = 4;
		if (cth >= h * 1024 || h > 16) { s = 31; h = 16; cth = total / s; }
		if (cth >= h * 1024) { s = 63; h = 16; cth = total / s; }
	}
	c = cth / h;
	if (c > 65535) c = 65535;
	*cyl = (uint16_t)c;
	*heads = (uint8_t)h;
	*spt = (uint8_t)s;
}

void vhd_uuid_str(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

int vhd_uuid_is_null(const uint8_t u[16])
{
	for (int i = 0; i < 16; i++)
		if (u[i])
			return 0;
	return 1;
}
