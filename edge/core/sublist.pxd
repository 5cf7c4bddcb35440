# Cython declarations for sublist.py (pure-Python mode: sublist.py is the source).
import cython


cdef class QueueGroup:
    cdef public list members
    cdef public bytes name
    cdef public Py_ssize_t next

    @cython.locals(members=list, i=Py_ssize_t)
    cpdef object pick(self)


cdef class Match:
    cdef public object head
    cdef public list plain
    cdef public list queues


cdef class _Node:
    cdef public dict literal
    cdef public _Node pwc
    cdef public _Node fwc
    cdef public list plain
    cdef public dict queues

    cpdef bint is_empty(self)


cdef class SubscriptionIndex:
    cdef public _Node _root
    cdef public dict _cache
    cdef public Py_ssize_t count
    cdef public Py_ssize_t generation
    cdef public Py_ssize_t inserts
    cdef public Py_ssize_t removes
    cdef public Py_ssize_t matches
    cdef public Py_ssize_t cache_hits

    cpdef void _changed(self)

    @cython.locals(m=Match, plain=list, queues=dict, cache=dict)
    cpdef Match match(self, object subject)

    @cython.locals(n=Py_ssize_t, nxt=_Node)
    cdef void _collect(self, _Node node, list tokens, Py_ssize_t i, list plain, dict queues)


@cython.locals(existing=list)
cdef void _add(_Node node, list plain, dict queues)
