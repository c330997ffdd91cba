/*
 * A VG read from its devices (image files or block devices), each a PV:
 * opened read-only, labels and metadata areas read, the newest metadata copy
 * whose checksums hold is parsed (the highest seqno over all devices). When
 * no current copy is good, older copies left in the circular buffers are
 * tried, one that wraps around the buffer's end included (with a warning
 * naming the copy); when none parses, the open is
 * refused with the reason. LVs are then checked against the devices: an LV
 * on a PV that was not given, or whose extents lie past the end of its
 * device, is marked unreadable with the reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lvm/lvm.h"

static ssize_t pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}


/* The text a raw_locn points to (it may wrap to the start of the buffer); checksum checked. */
static char *read_current(lvm_pvdev *d, const lvm_mda *m, const lvm_rlocn *r, lvm_err *e)
{
	if (r->size == 0 || r->size > LVM_MAX_TEXT || r->size > m->size - LVM_SECTOR || r->offset < LVM_SECTOR ||
	    r->offset >= m->size) {
		lvm_seterr(e, "EMETADATA", "%s: metadata location (offset %llu, %llu bytes) does not fit its area "
			   "(%llu bytes)", d->path, (unsigned long long)r->offset, (unsigned long long)r->size,
			   (unsigned long long)m->size);
		return NULL;
	}
	uint64_t first = m->size - r->offset < r->size ? m->size - r->offset : r->size;
	char *t = malloc(r->size + 1);
	if (!t) {
		lvm_seterr(e, "ENOMEM", "%s: out of memory for metadata", d->path);
		return NULL;
	}
	if (pread_all(d->fd, t, first, m->start + r->offset) != (ssize_t)first ||
	    (r->size > first && pread_all(d->fd, t + first, r->size - first, m->start + LVM_SECTOR) !=
					(ssize_t)(r->size - first))) {
		free(t);
		lvm_seterr(e, "ETRUNCATED", "%s: metadata text (%llu bytes at byte %llu) lies past the end of the device",
			   d->path, (unsigned long long)r->size, (unsigned long long)(m->start + r->offset));
		return NULL;
	}
	uint32_t crc = lvm_crc(LVM_INITIAL_CRC, (const uint8_t *)t, r->size);
	if (crc != r->checksum) {
		free(t);
		lvm_seterr(e, "ECHECKSUM", "%s: metadata text at byte %llu has a bad checksum (stored 0x%08x, computed "
			   "0x%08x)", d->path, (unsigned long long)(m->start + r->offset), r->checksum, crc);
		return NULL;
	}
	t[r->size] = 0;
	return t;
}

/* Current metadata of one area into vg; 0 ok. */
static int area_current(lvm_pvdev *d, const lvm_area *a, lvm_vg *vg, uint64_t *cur, lvm_err *e)
{
	uint8_t hb[LVM_SECTOR];
	lvm_mda m;
	if (pread_all(d->fd, hb, sizeof hb, a->offset) != (ssize_t)sizeof hb) {
		lvm_seterr(e, "ETRUNCATED", "%s: metadata area header at byte %llu lies past the end of the device",
			   d->path, (unsigned long long)a->offset);
		return -1;
	}
	if (lvm_mda_parse(hb, a->offset, &m, e) != 0) {
		char why[400], code[24];
		snprintf(why, sizeof why, "%.399s", e->msg);
		snprintf(code, sizeof code, "%s", e->code);
		lvm_seterr(e, code, "%.100s: %s", d->path, why);
		return -1;
	}
	if (m.nrlocn == 0 || (m.rlocn[0].flags & 1)) {
		lvm_seterr(e, "EMETADATA", "%s: metadata area at byte %llu holds no committed metadata", d->path,
			   (unsigned long long)a->offset);
		return -1;
	}
	*cur = m.start + m.rlocn[0].offset;
	char *t = read_current(d, &m, &m.rlocn[0], e);
	if (!t)
		return -1;
	int rc = lvm_vg_parse(t, m.rlocn[0].size, vg, e);
	free(t);
	return rc;
}

/* The text of the older copy at byte o of a metadata area read into buf (n bytes): up to
 * its NUL. A copy that runs into the end of the circular buffer goes on after the area's
 * header sector, as lvm2 writes it (whole: the whole area was read); *joined is then the
 * malloc'd text, to free. NULL when the copy has no end. */
static const char *old_copy(const char *buf, uint64_t n, uint64_t o, int whole, char **joined, size_t *len)
{
	const char *s = buf + o;
	const char *nul = memchr(s, 0, (size_t)(n - o));
	*joined = NULL;
	if (nul) {
		*len = (size_t)(nul - s);
		return s;
	}
	const char *rest = buf + LVM_SECTOR;
	const char *end = whole && o > LVM_SECTOR ? memchr(rest, 0, (size_t)(o - LVM_SECTOR)) : NULL;
	if (end == NULL)
		return NULL;
	size_t head = (size_t)(n - o), tail = (size_t)(end - rest);
	if ((*joined = malloc(head + tail + 1)) == NULL)
		return NULL;
	memcpy(*joined, s, head);
	memcpy(*joined + head, rest, tail);
	(*joined)[head + tail] = 0;
	*len = head + tail;
	return *joined;
}

/* Older copies stay in the circular buffer, 512-aligned: the newest that parses. */
static int area_scan(lvm_pvdev *d, const lvm_area *a, const uint64_t *bad, size_t nbad, lvm_vg *best, uint64_t *at)
{
	uint64_t size = a->size;
	if (size == 0 || a->offset >= d->size)
		return -1;
	if (size > d->size - a->offset)
		size = d->size - a->offset;  /* a truncated area: what is left */
	if (size > LVM_MAX_TEXT)
		size = LVM_MAX_TEXT;
	char *buf = malloc(size + 1);
	if (!buf)
		return -1;
	ssize_t n = pread_all(d->fd, buf, size, a->offset);
	int whole = n > 0 && (uint64_t)n == a->size;
	int found = -1;
	for (uint64_t o = LVM_SECTOR; n > 0 && o + 16 < (uint64_t)n; o += LVM_SECTOR) {
		const char *s = buf + o;
		int refused = 0;  /* the copy whose checksum failed is not an "older copy" */
		for (size_t k = 0; k < nbad; k++)
			refused |= bad[k] == a->offset + o;
		if (refused)
			continue;
		if (!(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
			continue;
		if (!memchr(s, '{', (size_t)n - o < 200 ? (size_t)n - o : 200))
			continue;
		char *joined;
		size_t len;
		const char *text = old_copy(buf, (uint64_t)n, o, whole, &joined, &len);
		lvm_vg vg;
		lvm_err e;
		int rc = text ? lvm_vg_parse(text, len, &vg, &e) : -1;
		free(joined);
		if (rc != 0)
			continue;
		if (found != 0 || vg.seqno > best->seqno) {
			if (found == 0)
				lvm_vg_free(best);
			*best = vg;
			*at = a->offset + o;
			found = 0;
		} else {
			lvm_vg_free(&vg);
		}
	}
	free(buf);
	return found;
}

/* the candidate vg (from device k, at byte at) replaces d's when it is newer */
static void take(lvm_dev *d, lvm_vg *vg, size_t k, uint64_t at, int *have)
{
	if (*have && vg->seqno <= d->vg.seqno) {
		lvm_vg_free(vg);
		return;
	}
	if (*have)
		lvm_vg_free(&d->vg);
	d->vg = *vg;
	d->mda_dev = k;
	d->mda_offset = at;
	*have = 1;
}

static void add_warning(lvm_dev *d, const char *first, const char *what)
{
	if (d->nwarnings < sizeof d->warnings / sizeof d->warnings[0])
		snprintf(d->warnings[d->nwarnings++], sizeof d->warnings[0], "%.300s; %.200s", first, what);
}

static int read_metadata(lvm_dev *d, lvm_err *e)
{
	lvm_err first = { "", "" };
	int have = 0;
	uint64_t bad[LVM_MAX_AREAS * 8];   /* current copies whose checksum failed: (device, offset) */
	size_t bad_dev[LVM_MAX_AREAS * 8], nbad = 0, nmeta = 0;
	for (size_t k = 0; k < d->ndevs; k++)
		for (size_t i = 0; i < d->devs[k].label.nmeta; i++, nmeta++) {
			lvm_vg vg;
			lvm_err here;
			uint64_t cur = 0;
			if (area_current(&d->devs[k], &d->devs[k].label.meta[i], &vg, &cur, &here) == 0) {
				take(d, &vg, k, cur, &have);
				continue;
			}
			if (!first.code[0])
				first = here;
			if (cur && nbad < sizeof bad / sizeof bad[0]) {
				bad_dev[nbad] = k;
				bad[nbad++] = cur;
			}
		}
	if (have && first.code[0])
		add_warning(d, first.msg, "the metadata copy of another area is used");
	if (have)
		return 0;
	if (nmeta == 0) {
		lvm_seterr(e, "EMETADATA", "%s: no metadata area on these PVs (the VG's metadata is on other PVs)",
			   d->path);
		return -1;
	}
	for (size_t k = 0; k < d->ndevs; k++) {
		uint64_t mine[LVM_MAX_AREAS * 8];
		size_t nmine = 0;
		for (size_t j = 0; j < nbad; j++)
			if (bad_dev[j] == k)
				mine[nmine++] = bad[j];
		for (size_t i = 0; i < d->devs[k].label.nmeta; i++) {
			uint64_t at = 0;
			lvm_vg vg;
			if (area_scan(&d->devs[k], &d->devs[k].label.meta[i], mine, nmine, &vg, &at) == 0)
				take(d, &vg, k, at, &have);
		}
	}
	if (!have) {
		lvm_seterr(e, first.code, "%.400s; no older metadata copy in the area parses either: refusing to guess",
			   first.msg);
		return -1;
	}
	char what[200];
	snprintf(what, sizeof what, "using the newest older metadata copy that parses (seqno %llu at byte %llu of "
		 "%.40s): changes made after it are not seen", (unsigned long long)d->vg.seqno,
		 (unsigned long long)d->mda_offset, d->devs[d->mda_dev].path);
	d->from_old_copy = 1;
	add_warning(d, first.msg, what);
	return 0;
}

static void pv_id_plain(const char *id, char out[33])
{
	size_t n = 0;
	for (; *id && n < 32; id++)
		if (*id != '-')
			out[n++] = *id;
	out[n] = 0;
}

/* Which device is which PV; LVs on missing PVs or past their device's end are unreadable. */
static int check_lvs(lvm_dev *d, lvm_err *e)
{
	lvm_vg *vg = &d->vg;
	d->pv_dev = malloc((vg->npvs ? vg->npvs : 1) * sizeof *d->pv_dev);
	if (!d->pv_dev) {
		lvm_seterr(e, "ENOMEM", "out of memory");
		return -1;
	}
	for (size_t i = 0; i < vg->npvs; i++) {
		char id[33];
		pv_id_plain(vg->pvs[i].id, id);
		d->pv_dev[i] = -1;
		for (size_t k = 0; k < d->ndevs; k++)
			if (strcmp(id, d->devs[k].label.pv_id) == 0)
				d->pv_dev[i] = (int)k;
		vg->pvs[i].present = d->pv_dev[i] >= 0;
	}
	for (size_t k = 0; k < d->ndevs; k++) {
		int known = 0;
		for (size_t i = 0; i < vg->npvs; i++)
			known |= d->pv_dev[i] == (int)k;
		if (!known) {
			lvm_seterr(e, "EMETADATA", "%s is PV %.32s, which VG %s does not list: give the PVs of one VG",
				   d->devs[k].path, d->devs[k].label.pv_id, vg->name);
			return -1;
		}
	}
	for (size_t i = 0; i < vg->nlvs; i++) {
		lvm_lv *lv = &vg->lvs[i];
		for (size_t s = 0; s < lv->nsegs && !lv->problem[0]; s++) {
			const lvm_seg *g = &lv->segs[s];
			if (g->pv < 0)
				continue;
			const lvm_pv *pv = &vg->pvs[g->pv];
			uint64_t end = pv->pe_start + (g->pe + g->extent_count) * vg->extent_size;
			if (!pv->present) {
				snprintf(lv->problem_code, sizeof lv->problem_code, "EMISSINGPV");
				snprintf(lv->problem, sizeof lv->problem, "LV %s: segment at logical extent %llu is on PV %s "
					 "(%.40s), which is not among the devices given (%.100s): that PV is missing", lv->name,
					 (unsigned long long)g->start_extent, pv->name, pv->id, d->path);
			} else if (end > d->devs[d->pv_dev[g->pv]].size) {
				const lvm_pvdev *pd = &d->devs[d->pv_dev[g->pv]];
				snprintf(lv->problem_code, sizeof lv->problem_code, "ERANGE");
				snprintf(lv->problem, sizeof lv->problem, "LV %s: extents %llu-%llu end at byte %llu, past the "
					 "end of %.100s (%llu bytes): device truncated", lv->name, (unsigned long long)g->pe,
					 (unsigned long long)(g->pe + g->extent_count - 1), (unsigned long long)end,
					 pd->path, (unsigned long long)pd->size);
			}
		}
	}
	return 0;
}

/* open one device and read its label */
static int open_pv(lvm_pvdev *pd, const char *path, lvm_err *e)
{
	pd->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pd->fd < 0) {
		int err = errno;
		lvm_seterr(e, err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : "EIO", "%s: cannot open: %s", path,
			   strerror(err));
		return -1;
	}
	off_t end = lseek(pd->fd, 0, SEEK_END);  /* block devices too */
	if (end < 0) {
		lvm_seterr(e, "EIO", "%s: cannot find its size: %s", path, strerror(errno));
		return -1;
	}
	pd->size = (uint64_t)end;
	uint8_t head[LVM_LABEL_SCAN * LVM_SECTOR] = { 0 };
	ssize_t n = pread_all(pd->fd, head, sizeof head, 0);
	if (n < 0) {
		lvm_seterr(e, "EIO", "%s: reading the label: %s", path, strerror(errno));
		return -1;
	}
	if (lvm_label_find(head, (size_t)n, &pd->label, e) != 0) {
		char why[400], code[24];
		snprintf(why, sizeof why, "%.399s", e->msg);
		snprintf(code, sizeof code, "%s", e->code);
		lvm_seterr(e, code, "%.100s: %s", path, why);
		return -1;
	}
	return 0;
}

static char *join(const char *const *paths, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(paths[i]) + 1;
	char *s = malloc(len);
	if (s) {
		s[0] = 0;
		for (size_t i = 0; i < n; i++) {
			if (i)
				strcat(s, ",");
			strcat(s, paths[i]);
		}
	}
	return s;
}

lvm_dev *lvm_open_many(const char *const *paths, size_t n, lvm_err *e)
{
	lvm_dev *d = calloc(1, sizeof *d);
	if (!d || n == 0 || !(d->path = join(paths, n)) || !(d->devs = calloc(n, sizeof *d->devs))) {
		if (d)
			free(d->path);
		free(d);
		lvm_seterr(e, n ? "ENOMEM" : "EINVAL", n ? "out of memory" : "no device given");
		return NULL;
	}
	d->refs = 1;
	for (size_t k = 0; k < n; k++)
		d->devs[k].fd = -1;
	d->ndevs = n;
	for (size_t k = 0; k < n; k++) {
		if (!(d->devs[k].path = strdup(paths[k]))) {
			lvm_seterr(e, "ENOMEM", "out of memory");
			goto fail;
		}
		if (open_pv(&d->devs[k], paths[k], e) != 0)
			goto fail;
		for (size_t j = 0; j < k; j++)
			if (strcmp(d->devs[j].label.pv_id, d->devs[k].label.pv_id) == 0) {
				lvm_seterr(e, "EINVAL", "%s and %s are the same PV (%.32s)", paths[j], paths[k],
					   d->devs[k].label.pv_id);
				goto fail;
			}
	}
	if (read_metadata(d, e) != 0 || check_lvs(d, e) != 0)
		goto fail;
	return d;
fail:
	lvm_close(d);
	return NULL;
}

lvm_dev *lvm_open(const char *path, lvm_err *e)
{
	return lvm_open_many(&path, 1, e);
}

lvm_dev *lvm_open_list(const char *list, lvm_err *e)
{
	char *copy = strdup(list);
	const char *paths[64];
	size_t n = 0;
	if (!copy) {
		lvm_seterr(e, "ENOMEM", "out of memory");
		return NULL;
	}
	for (char *save = NULL, *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (n == sizeof paths / sizeof paths[0]) {
			free(copy);
			lvm_seterr(e, "EINVAL", "more than %zu devices", n);
			return NULL;
		}
		paths[n++] = p;
	}
	lvm_dev *d = lvm_open_many(paths, n, e);
	free(copy);
	return d;
}

void lvm_ref(lvm_dev *d) { d->refs++; }

void lvm_close(lvm_dev *d)
{
	if (!d || --d->refs > 0)
		return;
	for (size_t k = 0; k < d->ndevs; k++) {
		if (d->devs[k].fd >= 0)
			close(d->devs[k].fd);
		free(d->devs[k].path);
	}
	free(d->devs);
	free(d->pv_dev);
	lvm_vg_free(&d->vg);
	free(d->path);
	free(d);
}

int lvm_find_lv(const lvm_dev *d, const char *name)
{
	for (size_t i = 0; i < d->vg.nlvs; i++)
		if (strcmp(d->vg.lvs[i].name, name) == 0)
			return (int)i;
	return -1;
}

ssize_t lvm_lv_pread(lvm_dev *d, size_t i, void *buf, size_t len, uint64_t off, lvm_err *e)
{
	const lvm_lv *lv = &d->vg.lvs[i];
	if (lv->problem[0]) {
		lvm_seterr(e, lv->problem_code, "%s", lv->problem);
		return -1;
	}
	size_t done = 0;
	while (done < len && off + done < lv->size) {
		uint64_t at, run;
		int pv;
		if (lvm_lv_map(&d->vg, lv, off + done, &at, &run, &pv) != 0) {
			lvm_seterr(e, "EMETADATA", "LV %s: byte %llu is in no segment", lv->name,
				   (unsigned long long)(off + done));
			return -1;
		}
		size_t want = len - done;
		if (want > run)
			want = (size_t)run;
		if (want > lv->size - (off + done))
			want = (size_t)(lv->size - (off + done));
		const lvm_pvdev *pd = &d->devs[d->pv_dev[pv]];
		ssize_t n = pread_all(pd->fd, (char *)buf + done, want, at);
		if (n < 0) {
			lvm_seterr(e, "EIO", "%s: LV %s: read at byte %llu: %s", pd->path, lv->name, (unsigned long long)at,
				   strerror(errno));
			return -1;
		}
		done += (size_t)n;
		if ((size_t)n < want)
			break;  /* the device shrank under us */
	}
	return (ssize_t)done;
}

int lvm_lv_hole(lvm_dev *d, size_t i, uint64_t off, uint64_t len)
{
	const lvm_lv *lv = &d->vg.lvs[i];
	if (lv->problem[0] || off + len > lv->size)
		return 0;
	while (len > 0) {
		uint64_t at, run;
		int pv;
		if (lvm_lv_map(&d->vg, lv, off, &at, &run, &pv) != 0)
			return 0;
		uint64_t n = run < len ? run : len;
		off_t data = lseek(d->devs[d->pv_dev[pv]].fd, (off_t)at, SEEK_DATA);
		if (data < 0 && errno != ENXIO)
			return 0;   /* a block device, or no hole support: unknown */
		if (data >= 0 && (uint64_t)data < at + n)
			return 0;
		off += n;
		len -= n;
	}
	return 1;
}
