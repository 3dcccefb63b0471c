/*
 * Test helper: runs each argument through libxlutil's xlu_disk_parse (the disk-spec lexer xl itself uses)
 * and prints one line per spec: "OK <libxl_device_disk as JSON>" or "ERR <rc>" (the parser's own message
 * goes to stderr). Exit 0 when every spec parsed, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <libxl.h>
#include <libxlutil.h>

int main(int argc, char **argv)
{
    int failed = 0;
    XLU_Config *cfg = xlu_cfg_init(stderr, "disk-spec");
    if (!cfg) { perror("xlu_cfg_init"); return 2; }
    for (int i = 1; i < argc; i++) {
        libxl_device_disk disk;
        libxl_device_disk_init(&disk);
        const char *spec = argv[i];
        int rc = xlu_disk_parse(cfg, 1, &spec, &disk);
        if (rc) {
            printf("ERR %d\n", rc);
            failed = 1;
        } else {
            char *json = libxl_device_disk_to_json(NULL, &disk);
            /* the JSON is pretty-printed; fold it onto one line */
            for (char *p = json; p && *p; p++) if (*p == '\n') *p = ' ';
            printf("OK %s\n", json ? json : "{}");
            free(json);
        }
        libxl_device_disk_dispose(&disk);
    }
    xlu_cfg_destroy(cfg);
    return failed;
}
