/*
 * proxy.h -- one request's lifecycle: route, upstream, stream both ways.
 * The entry points are declared in conn.h (proxy_start, proxy_client_read,
 * proxy_client_drained, proxy_abort) because proxy.c works on struct conn.
 */
#ifndef STOA_PROXY_H
#define STOA_PROXY_H

#include "conn.h"

#endif
