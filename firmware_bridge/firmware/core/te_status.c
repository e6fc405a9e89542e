/* The status string tables, generated from TX_ERROR_LIST (never kept by hand). */
#include "te_status.h"

const char *te_status_name(te_status_t status)
{
    switch (status) {
#define TE_STATUS_NAME(name, code, text) \
    case TE_##name:                     \
        return #name;
        TX_ERROR_LIST(TE_STATUS_NAME)
#undef TE_STATUS_NAME
    }
    return "UNKNOWN";
}

const char *te_status_text(te_status_t status)
{
    switch (status) {
#define TE_STATUS_TEXT(name, code, text) \
    case TE_##name:                     \
        return text;
        TX_ERROR_LIST(TE_STATUS_TEXT)
#undef TE_STATUS_TEXT
    }
    return "unknown status";
}
