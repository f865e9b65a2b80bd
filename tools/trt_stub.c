/* Stand-in for TensorRT's native libraries (libnvinfer, libnvonnxparser, libnvinfer_plugin) so
 * that the real tensorrt-cu12-bindings wheels import on a machine without a GPU or TensorRT.
 *
 * The bindings link only these C entry points (`nm -D --undefined-only tensorrt.so`); every
 * factory returns NULL, so `trt.Builder(logger)` raises "factory function returned nullptr" and
 * nothing can run, but every class, method, property, enum and pybind signature can be read.
 * Built by tools/trt_bindings.py with -DSTUB_VERSION=<major * 10000>.
 */
#include <stddef.h>

#ifndef STUB_VERSION
#define STUB_VERSION 100000
#endif

void *createInferBuilder_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { (void)logger; (void)version; return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version)
{ (void)engine; (void)logger; (void)version; return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version)
{ (void)network; (void)logger; (void)version; return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version)
{ (void)refitter; (void)logger; (void)version; return NULL; }
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(int capability) { (void)capability; return NULL; }
int initLibNvInferPlugins(void *logger, const char *lib_namespace) { (void)logger; (void)lib_namespace; return 0; }
int getNvOnnxParserVersion(void) { return STUB_VERSION; }
int getInferLibVersion(void) { return STUB_VERSION; }
