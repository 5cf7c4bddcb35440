# Cython declarations for parser.py (pure-Python mode: parser.py is the source, this file only adds
# C types when hatch_build.py compiles it). Every attribute other modules or tests read is public.
import cython


cdef class Parser:
    cdef public object handler
    cdef public str kind
    cdef dict _ops
    cdef public Py_ssize_t max_control_line
    cdef Py_ssize_t _max_payload
    cdef bytearray _buf
    cdef object _pending
    cdef Py_ssize_t _need
    cdef public bint _suspended
    cdef public object fast_route
    cdef public Py_ssize_t fast_msgs
    cdef public Py_ssize_t fast_bytes
    cdef dict _pub_lines
    cdef tuple _last_pub

    @cython.locals(
        buf=bytes, pos=Py_ssize_t, n=Py_ssize_t, nl=Py_ssize_t, end=Py_ssize_t, start=Py_ssize_t,
        stop=Py_ssize_t, size=Py_ssize_t, nmsgs=Py_ssize_t, nbytes=Py_ssize_t, client=bint, divert=bint,
        pub_lines=dict, last_line=bytes, line=bytes, parsed=tuple, last_parsed=tuple,
    )
    cpdef feed(self, data)

    @cython.locals(end=Py_ssize_t, nargs=Py_ssize_t, args=list, parsed=tuple)
    cdef tuple _parse_pub_line(self, bytes buf, Py_ssize_t pos, Py_ssize_t nl)

    @cython.locals(i=Py_ssize_t, limit=Py_ssize_t)
    cdef tuple _op_of(self, bytes buf, Py_ssize_t pos, Py_ssize_t end)

    @cython.locals(op=Py_ssize_t, astart=Py_ssize_t, start=Py_ssize_t, size=Py_ssize_t, args=list)
    cdef Py_ssize_t _dispatch_line(self, bytes buf, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t nl,
                                   Py_ssize_t n) except? -2

    @cython.locals(size=Py_ssize_t, stop=Py_ssize_t, op=Py_ssize_t)
    cdef Py_ssize_t _finish_payload(self, bytes buf, tuple pending, Py_ssize_t start=*) except? -2
