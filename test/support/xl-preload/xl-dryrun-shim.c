/*
 * SIMULATION, for tests only: an LD_PRELOAD library that lets Debian's real `xl` (xen-utils-4.17) run
 * `xl -N create -d CFG` on a machine without a Xen hypervisor. The dry run parses the config with Xen's own
 * libxlutil and xl_parse.c and prints the libxl domain config as JSON; before that, xl opens libxenctrl and
 * xenstore handles and asks libxl for version and host facts. These are the only entry points that touch
 * the hypervisor on that path; each is answered here with fixed, plausible values of a 4-CPU x86_64 host.
 * Nothing here is used outside the test suite.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xenctrl.h>
#include <xenstore.h>
#include <xen/version.h>

static char fake_handle[64];

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger, unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return (xc_interface *)fake_handle;
}

int xc_interface_close(xc_interface *xch) { (void)xch; return 0; }

struct xs_handle *xs_open(unsigned long flags) { (void)flags; return (struct xs_handle *)fake_handle; }

void xs_close(struct xs_handle *xsh) { (void)xsh; }

int xc_version(xc_interface *xch, int cmd, void *arg)
{
    (void)xch;
    switch (cmd) {
    case XENVER_version:
        return (4 << 16) | 17;
    case XENVER_extraversion:
        memset(arg, 0, sizeof(xen_extraversion_t));
        strcpy((char *)arg, ".7-fake");
        return 0;
    case XENVER_compile_info:
        memset(arg, 0, sizeof(xen_compile_info_t));
        return 0;
    case XENVER_capabilities:
        memset(arg, 0, sizeof(xen_capabilities_info_t));
        strcpy((char *)arg, "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
        return 0;
    case XENVER_changeset:
        memset(arg, 0, sizeof(xen_changeset_info_t));
        strcpy((char *)arg, "fake");
        return 0;
    case XENVER_platform_parameters:
        memset(arg, 0, sizeof(xen_platform_parameters_t));
        return 0;
    case XENVER_pagesize:
        return 4096;
    case XENVER_commandline:
        memset(arg, 0, sizeof(xen_commandline_t));
        return 0;
    default:
        errno = ENOSYS;
        return -1;
    }
}

int xc_get_max_cpus(xc_interface *xch) { (void)xch; return 4; }
int xc_get_online_cpus(xc_interface *xch) { (void)xch; return 4; }
int xc_get_max_nodes(xc_interface *xch) { (void)xch; return 1; }

int xc_physinfo(xc_interface *xch, xc_physinfo_t *info)
{
    (void)xch;
    memset(info, 0, sizeof(*info));
    info->threads_per_core = 1;
    info->cores_per_socket = 4;
    info->nr_cpus = 4;
    info->max_cpu_id = 3;
    info->nr_nodes = 1;
    info->max_node_id = 0;
    info->cpu_khz = 2000000;
    info->capabilities = XEN_SYSCTL_PHYSCAP_hvm | XEN_SYSCTL_PHYSCAP_hap;
    info->total_pages = 1048576; /* 4 GiB */
    info->free_pages = 524288;
    info->max_mfn = 1048575;
    return 0;
}

long xc_sharing_freed_pages(xc_interface *xch) { (void)xch; return 0; }
long xc_sharing_used_frames(xc_interface *xch) { (void)xch; return 0; }
