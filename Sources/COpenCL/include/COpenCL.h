/*
 * The OpenCL 1.2 entry points qtale uses, as a table of function pointers filled by dlopen()/dlsym().
 *
 * Nothing links against libOpenCL: the types come from the system <CL/cl.h> (opencl-c-headers), the
 * functions from whichever ICD loader qtale_opencl_load() finds at run time, so a machine without
 * OpenCL still runs every other engine. Never call an OpenCL symbol directly; go through the table.
 */
#ifndef QTALE_COPENCL_H
#define QTALE_COPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#define QTALE_OPENCL_FUNCTION(name) __typeof__(cl##name) *name;

/* One member per entry point, named without the `cl` prefix (table.GetPlatformIDs, ...). */
typedef struct QTaleOpenCLFunctions {
    QTALE_OPENCL_FUNCTION(GetPlatformIDs)
    QTALE_OPENCL_FUNCTION(GetPlatformInfo)
    QTALE_OPENCL_FUNCTION(GetDeviceIDs)
    QTALE_OPENCL_FUNCTION(GetDeviceInfo)
    QTALE_OPENCL_FUNCTION(CreateContext)
    QTALE_OPENCL_FUNCTION(ReleaseContext)
    QTALE_OPENCL_FUNCTION(CreateCommandQueue)
    QTALE_OPENCL_FUNCTION(ReleaseCommandQueue)
    QTALE_OPENCL_FUNCTION(CreateBuffer)
    QTALE_OPENCL_FUNCTION(ReleaseMemObject)
    QTALE_OPENCL_FUNCTION(EnqueueFillBuffer)
    QTALE_OPENCL_FUNCTION(EnqueueWriteBuffer)
    QTALE_OPENCL_FUNCTION(EnqueueReadBuffer)
    QTALE_OPENCL_FUNCTION(CreateProgramWithSource)
    QTALE_OPENCL_FUNCTION(CreateProgramWithBinary)
    QTALE_OPENCL_FUNCTION(BuildProgram)
    QTALE_OPENCL_FUNCTION(GetProgramInfo)
    QTALE_OPENCL_FUNCTION(GetProgramBuildInfo)
    QTALE_OPENCL_FUNCTION(ReleaseProgram)
    QTALE_OPENCL_FUNCTION(CreateKernel)
    QTALE_OPENCL_FUNCTION(GetKernelWorkGroupInfo)
    QTALE_OPENCL_FUNCTION(ReleaseKernel)
    QTALE_OPENCL_FUNCTION(SetKernelArg)
    QTALE_OPENCL_FUNCTION(EnqueueNDRangeKernel)
    QTALE_OPENCL_FUNCTION(Flush)
    QTALE_OPENCL_FUNCTION(Finish)
} QTaleOpenCLFunctions;

#undef QTALE_OPENCL_FUNCTION

/*
 * Opens "libOpenCL.so.1" (falling back to "libOpenCL.so") and fills `table` with every entry point.
 * Returns NULL on success, else a message naming the library or symbol that is missing (a static
 * string, valid until the next call). Safe to call more than once; the library stays loaded.
 */
const char *qtale_opencl_load(QTaleOpenCLFunctions *table);

#endif
