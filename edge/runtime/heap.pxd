# Cython declarations for heap.py (pure-Python mode: heap.py is the source). glibc's malloc_trim,
# called directly, so the compiled build does not import ctypes for it; elsewhere (musl) a no-op.
cdef extern from *:
    """
    #if defined(__GLIBC__)
    #include <malloc.h>
    static int edge_malloc_trim(size_t pad) { return malloc_trim(pad); }
    #else
    static int edge_malloc_trim(size_t pad) { (void)pad; return 0; }
    #endif
    """
    int _c_malloc_trim "edge_malloc_trim" (size_t pad)
