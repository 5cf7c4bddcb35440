# Cython declarations for outbound.py (pure-Python mode: outbound.py is the source). The router
# cimports OutboundBuffer to apply add_parts' rules inline over these fields at C speed.
import cython


cdef class OutboundBuffer:
    cdef public object owner
    cdef public object _mark_dirty
    cdef public list chunks
    cdef public Py_ssize_t size
    cdef public Py_ssize_t max_pending
    cdef public Py_ssize_t limit
    cdef public object on_overflow
    cdef public object msgs
    cdef public object bytes
    cdef public bint closed

    cpdef void append(self, object data)
    cpdef bint add_msg(self, object frame, Py_ssize_t nbytes)
    cpdef bint add_parts(self, object head, object sid, object tail, Py_ssize_t nbytes)
    cpdef void overflow(self)

    @cython.locals(data=bytes)
    cpdef bytes take(self)

    cpdef void written(self, Py_ssize_t backlog)
