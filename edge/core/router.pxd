# Cython declarations for router.py (pure-Python mode: router.py is the source).
import cython

from edge.core.outbound cimport OutboundBuffer
from edge.core.sublist cimport Match, QueueGroup, SubscriptionIndex


cdef class Router:
    cdef public dict _cache
    cdef public list _dirty
    cdef public object _schedule_flush
    cdef public Py_ssize_t cache_hits
    cdef public list hooks
    cdef public object in_msgs
    cdef public object in_bytes
    cdef public object out_msgs
    cdef public object out_bytes
    cdef public SubscriptionIndex sublist

    @cython.locals(m=Match, delivered=Py_ssize_t)
    cpdef Py_ssize_t route(self, object src, object subject, object reply, Py_ssize_t hdr_len, object data,
                           object queues=*) except? -1

    @cython.locals(
        delivered=Py_ssize_t, dirty=list, was_clean=bint, size=Py_ssize_t, frame_len=Py_ssize_t,
        targets=list, group=QueueGroup, chunks=list, b=OutboundBuffer, head=bytes, tail=bytes, plain_tail=bytes,
    )
    cdef Py_ssize_t _deliver(self, object src, object subject, object reply, Py_ssize_t hdr_len, object data,
                             Match m) except? -1
