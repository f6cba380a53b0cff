#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <x86intrin.h>
#include <string.h>
static _Alignas(128) _Atomic long gen;
static _Alignas(128) _Atomic long done;
static int getenv_sep; static float *x, *g; static long N, H; static _Alignas(128) unsigned long t_post; static unsigned long see_sum, hw_sum, cw_sum, wait_sum;
static float *x2,*g2; static void work(long lo, long hi){ float*xx=x,*gg=g; if(lo>0 && getenv_sep){xx=x2-lo; gg=g2-lo;} for(long i=lo;i<hi;i++) xx[i] -= 0.01f*gg[i]; }
static void *helper(void*a){ long seen=0; for(;;){ long v; while((v=atomic_load_explicit(&gen,memory_order_acquire))==seen) _mm_pause(); if(v<0) return 0; seen=v; unsigned long h0=__rdtsc(); see_sum+=h0-t_post; work(H,N); hw_sum+=__rdtsc()-h0; atomic_store_explicit(&done,v,memory_order_release);} }
int main(int argc,char**argv){ N=atol(argv[1]); double frac=argc>2?atof(argv[2]):0.5; H=(long)(N*frac)&~63L; x=aligned_alloc(64,N*4); g=aligned_alloc(64,N*4); for(long i=0;i<N;i++){x[i]=1;g[i]=(i%97-48)*1e-3f;}
 getenv_sep=getenv("SEP")!=0; x2=aligned_alloc(4096,N*4+(1<<20)); g2=aligned_alloc(4096,N*4+(1<<20)); for(long i=0;i<N;i++){x2[i]=1;g2[i]=(i%97-48)*1e-3f;} pthread_t t; pthread_create(&t,0,helper,0); long R=200000; 
 for(int rep=0;rep<3;rep++){
 unsigned long a=__rdtsc(); for(long s=1;s<=R;s++){ t_post=__rdtsc(); atomic_store_explicit(&gen,s+rep*R,memory_order_release); unsigned long c0=__rdtsc(); work(0,H); unsigned long c1=__rdtsc(); cw_sum+=c1-c0; while(atomic_load_explicit(&done,memory_order_acquire)!=s+rep*R) _mm_pause(); wait_sum+=__rdtsc()-c1; } unsigned long b=__rdtsc();
 unsigned long c=__rdtsc(); for(long s=1;s<=R;s++){ work(0,N); __asm__ volatile(""::"r"(x):"memory"); } unsigned long d=__rdtsc();
 printf("N=%ld split %.0f serial %.0f tsc cycles/step; see %.0f helper work %.0f caller work %.0f wait %.0f\n",N,(double)(b-a)/R,(double)(d-c)/R,(double)see_sum/R,(double)hw_sum/R,(double)cw_sum/R,(double)wait_sum/R); see_sum=hw_sum=cw_sum=wait_sum=0;}
 atomic_store(&gen,-1); pthread_join(t,0);}
