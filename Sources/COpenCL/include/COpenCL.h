// Placeholder: replaced by the OpenCL function table and loader.
int qtale_opencl_placeholder(void);
