/* Loads the OpenCL ICD loader at run time and resolves the entry points of QTaleOpenCLFunctions. */
#include "COpenCL.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static char qtale_opencl_error[512];

const char *qtale_opencl_load(QTaleOpenCLFunctions *table) {
    memset(table, 0, sizeof *table);
    void *library = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) library = dlopen("libOpenCL.so", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        snprintf(qtale_opencl_error, sizeof qtale_opencl_error,
                 "libOpenCL.so.1 not found: install ocl-icd-libopencl1 and an OpenCL driver "
                 "(pocl-opencl-icd for the CPU)");
        return qtale_opencl_error;
    }
#define QTALE_RESOLVE(name)                                                                         \
    do {                                                                                            \
        *(void **)&table->name = dlsym(library, "cl" #name);                                        \
        if (!table->name) {                                                                         \
            snprintf(qtale_opencl_error, sizeof qtale_opencl_error,                                 \
                     "libOpenCL.so.1 lacks cl" #name " (OpenCL 1.2 is required): update "           \
                     "ocl-icd-libopencl1");                                                         \
            return qtale_opencl_error;                                                              \
        }                                                                                           \
    } while (0)
    QTALE_RESOLVE(GetPlatformIDs);
    QTALE_RESOLVE(GetPlatformInfo);
    QTALE_RESOLVE(GetDeviceIDs);
    QTALE_RESOLVE(GetDeviceInfo);
    QTALE_RESOLVE(CreateContext);
    QTALE_RESOLVE(ReleaseContext);
    QTALE_RESOLVE(CreateCommandQueue);
    QTALE_RESOLVE(ReleaseCommandQueue);
    QTALE_RESOLVE(CreateBuffer);
    QTALE_RESOLVE(ReleaseMemObject);
    QTALE_RESOLVE(EnqueueFillBuffer);
    QTALE_RESOLVE(EnqueueWriteBuffer);
    QTALE_RESOLVE(EnqueueReadBuffer);
    QTALE_RESOLVE(CreateProgramWithSource);
    QTALE_RESOLVE(CreateProgramWithBinary);
    QTALE_RESOLVE(BuildProgram);
    QTALE_RESOLVE(GetProgramInfo);
    QTALE_RESOLVE(GetProgramBuildInfo);
    QTALE_RESOLVE(ReleaseProgram);
    QTALE_RESOLVE(CreateKernel);
    QTALE_RESOLVE(GetKernelWorkGroupInfo);
    QTALE_RESOLVE(ReleaseKernel);
    QTALE_RESOLVE(SetKernelArg);
    QTALE_RESOLVE(EnqueueNDRangeKernel);
    QTALE_RESOLVE(Flush);
    QTALE_RESOLVE(Finish);
#undef QTALE_RESOLVE
    return NULL;
}
