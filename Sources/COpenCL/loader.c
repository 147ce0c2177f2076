#include "COpenCL.h"
int qtale_opencl_placeholder(void) { return 0; }
